"""
Thin CLI wrappers, registered in ``conference/piccolo_app.py`` as
``piccolo conference <command>``: they call the library, print, and set the
exit status. Nothing else in ``conference`` prints or exits.
"""
