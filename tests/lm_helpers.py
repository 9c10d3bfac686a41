"""Settings shared by the character-LM tests under tests/train and tests/cli (a plain module:
importing names from a conftest.py breaks as soon as another test folder has a conftest of its own,
since both are named conftest). tests/conftest.py puts this folder on sys.path."""

# A model this small trains a step in about a millisecond; the tests check plumbing and exactness,
# not quality. --max-time 0: step-based, so the numbers do not depend on the machine's speed.
TINY = ["--hidden-size", "16", "--embed-size", "8", "--seq-len", "8", "--batch-size", "4",
        "--log-every", "1", "--sample-length", "0", "--device", "cpu", "--max-time", "0"]
