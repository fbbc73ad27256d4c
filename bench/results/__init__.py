"""A results folder: its files, written atomically by one process at a time, and its identity (what it holds, whether
a run may resume, widen or replace it)."""
