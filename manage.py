#!/usr/bin/env python
"""Django's command-line utility for administrative tasks.

Production settings unless DJANGO_SETTINGS_MODULE says otherwise (hipaamail/startup.py, ADR 0017): the demo
(`make run`) and the tests (`make test`) set it; an operator who forgets it gets production's clear refusal.
"""
import sys


def main() -> None:
    from hipaamail.startup import settings_load

    settings_load()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
