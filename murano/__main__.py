from murano.cli import main

raise SystemExit(main())
