from eigentone.cli import main

raise SystemExit(main())
