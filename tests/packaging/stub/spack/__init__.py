# A minimal stand-in for Spack, enough to import and exercise packaging/spack/package.py.
