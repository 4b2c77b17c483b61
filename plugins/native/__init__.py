"""Native (C++) code: the eigentone core (core/) and the DAW plugin (dpf/); binding.py loads the core's C API."""
