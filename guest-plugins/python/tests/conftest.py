import pathlib
import sys

# The SDK is imported from the source tree, as a policy project vendors it.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
