"""``python -m trainables.offline.glue_synth``: the command line of :mod:`.cli`."""

from trainables.offline.glue_synth.cli import main

main()
