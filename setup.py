"""Podium's compiled parts, all optional: the injection classifier's n-gram features
(podium/policy/_ngrams.c), the screens' search for fixed words (podium/policy/_needles.c) and
the name tagger (podium/policy/_name_scores.c: its scores, and the whole tagger for ASCII
text). Without a C compiler the build skips
them and Podium uses the Python implementations beside them (ngrams.py, needles.py,
name_scores.py), which give the same results."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "podium.policy._ngrams",
            ["podium/policy/_ngrams.c"],
            optional=True,
            extra_compile_args=["-O2"],
        ),
        Extension(
            "podium.policy._name_scores",
            ["podium/policy/_name_scores.c"],
            optional=True,
            extra_compile_args=["-O2"],
        ),
        Extension(
            "podium.policy._needles",
            ["podium/policy/_needles.c"],
            optional=True,
            extra_compile_args=["-O2"],
        ),
    ]
)
