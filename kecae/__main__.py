from kecae.cli import main

raise SystemExit(main())
