"""Build step for the one C extension; everything else is in pyproject.toml."""
from setuptools import Extension, setup

# the content stage's word finder (filters/content/_wordscan.c); optional: without a C compiler the install
# goes on and filters/content/tokens.py and wordindex.py take their Python paths (the same results, slower)
setup(ext_modules=[Extension("filters.content._wordscan", ["filters/content/_wordscan.c"], optional=True,
                             extra_compile_args=["-O2"])])
