"""The tools around the handler: archiving, serving control, training, evaluation, load generation
and benchmarks, plotting. ``hflabels`` (the console command) and ``scripts/*.py`` are thin CLIs
over these modules; the handler package itself never imports them."""
