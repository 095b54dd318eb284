"""Built-in hashing methods, one module each; every module is imported by ``registry.discover``."""
