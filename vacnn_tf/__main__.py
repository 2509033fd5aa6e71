import sys

from vacnn_tf.cli import main

sys.exit(main())
