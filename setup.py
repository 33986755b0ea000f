"""The optional compiled kernels (scanner/_kernels.c, see scanner/kernels.py); everything else
is in pyproject.toml. ``optional=True``: where the extension cannot be built (no compiler) the
install goes on and meshscan runs the numpy code, which gives the same bits.

No FMA contraction and no fast-math: every product and sum must round as numpy's separate
operations do (the kernels are tested bit for bit against the numpy code)."""

from setuptools import Extension, setup

COMMON = ["scanner/_kernels_common.h"]  # the precision guard, buffer check and splitmix they share
FLAGS = ["-O3", "-ffp-contract=off", "-fno-fast-math", "-fno-math-errno", "-fno-trapping-math"]

setup(
    ext_modules=[
        Extension(
            "scanner._kernels", sources=["scanner/_kernels.c"], extra_compile_args=FLAGS, depends=COMMON, optional=True
        ),
        Extension(  # the classifier's shape features (scanner/kernels.py: ``shape``)
            "scanner._shape_kernels",
            sources=["scanner/_shape_kernels.c"],
            extra_compile_args=FLAGS,
            depends=COMMON,
            optional=True,
        ),
        Extension(  # the local patch codes (scanner/kernels.py: ``patches``)
            "scanner._patch_kernels",
            sources=["scanner/_patch_kernels.c"],
            extra_compile_args=FLAGS,
            depends=COMMON,
            optional=True,
        ),
    ]
)
