"""halo-async: an asyncio-native SDK for the Halo Cloud API for Integrators."""
