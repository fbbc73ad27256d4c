"""Every dataset a run can name, loaded into one in-memory form, with its content's fingerprint."""
