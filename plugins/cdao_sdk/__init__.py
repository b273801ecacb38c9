"""CDAO SDK: task decorators and configure/run/monitor on top of flytekit."""
