"""One module per ``hflabels`` subcommand: ``configure(parser)`` adds its arguments, ``run(args)``
does the work through the library and returns the exit status."""
