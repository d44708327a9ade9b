import sys

from mpirl.bench import main

sys.exit(main())
