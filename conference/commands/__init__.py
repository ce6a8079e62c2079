"""
Thin CLI wrappers, registered in ``conference/piccolo_app.py`` as
``piccolo conference <command>``: they call the library, print, and set the
exit status. Nothing else in ``conference`` prints or exits. Each is
decorated with :func:`conference.commands.cli.exit_on_error`, which turns a
:class:`~conference.errors.ConferenceError` into one line on stderr and
exit status 1.
"""
