"""``python -m stream_forecaster`` is the ``stream-forecaster`` command."""

from stream_forecaster.cli.commands import main

raise SystemExit(main())
