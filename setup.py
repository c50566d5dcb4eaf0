"""Build step for the two C extensions; everything else is in pyproject.toml."""
from setuptools import Extension, setup

# the content stage's word finder (filters/content/_wordscan.c); optional: without a C compiler the install
# goes on and filters/content/tokens.py and wordindex.py take their Python paths (the same results, slower)
# and the footer guard's tag scanner (filters/_html_scan.c; filters/html_scan.py is its Python path)
setup(ext_modules=[Extension("filters.content._wordscan", ["filters/content/_wordscan.c"], optional=True,
                             extra_compile_args=["-O2"]),
                   Extension("filters._html_scan", ["filters/_html_scan.c"], optional=True,
                             extra_compile_args=["-O2"])])
