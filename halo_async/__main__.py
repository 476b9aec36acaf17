"""``python -m halo_async``: the ``halo`` command line."""

from halo_async.cli import main

if __name__ == "__main__":
    main()
