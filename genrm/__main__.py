from genrm.cli import main

raise SystemExit(main())
