"""Build script: compiles every Cython module under cext/ as ``cext.<name>``.

The compiled module keeps the import path of its source file (cext/foo.pyx -> cext.foo):
remapping source folders into another package name breaks ``cimport`` at run time with
Cython 3 (see ../shared/STYLE.md), so we do not do it.
"""

from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent


def cython_extensions() -> list[Extension]:
    exts = []
    for pyx in sorted((HERE / "cext").glob("*.pyx")):
        name = f"cext.{pyx.stem}"
        exts.append(
            Extension(
                name,
                [str(pyx.relative_to(HERE))],
                include_dirs=[numpy.get_include()],
                extra_compile_args=["-O3"],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            )
        )
    return exts


setup(
    ext_modules=cythonize(
        cython_extensions(),
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    )
)
