"""One module per lab tool: ``configure(parser)`` adds its arguments, ``run(args)`` does the work."""
