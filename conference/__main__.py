"""
``python -m conference COMMAND``: the same commands as
``piccolo conference COMMAND``, without the ``piccolo`` CLI's warning about
pending migrations (``run`` and ``migrate`` apply them anyway). ``make run``
uses it.
"""

from targ import CLI


def main() -> None:
    """Register the conference app's commands with targ and run one."""
    from conference.piccolo_app import APP_CONFIG

    cli = CLI(description="conference: the LiveKit conference data layer")
    for command in APP_CONFIG.get_commands():
        cli.register(command.callable, command_name=command.command_name, aliases=command.aliases)
    cli.run()


if __name__ == "__main__":
    main()
