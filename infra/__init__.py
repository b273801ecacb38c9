"""The Pulumi program for the CDAO platform (see README and infra/config.py)."""
