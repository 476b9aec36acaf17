"""The ``halo`` command line (needs the ``cli`` extra: click and rich).

``halo demo`` fans a query out across an embedded emulator; ``halo query``, ``halo fan-out``
and ``halo sites`` talk to Halo (or, with ``--emulator``, to an emulator in the process);
``halo emulator serve`` serves the emulator over HTTP. Nothing outside this package imports
it, so ``import halo_async`` never loads click or rich.
"""

from halo_async.cli._root import cli, main

__all__ = ["cli", "main"]
