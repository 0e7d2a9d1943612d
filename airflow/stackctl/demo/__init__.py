"""The demo: a generator of tenants with real structure, the seeding of the native stack with
them, defects to inject into their data, and the `make demo` runner (`python -m stackctl.demo`).

None of it ships: the image (.dockerignore) and the hosts (ansible's code archive) leave this
package out, so workers/, services/, dags/ and plugins/ never import it.

    data.py      the deterministic tenant generator
    seed.py      demo tenants into the platform database and object storage
    defects.py   one kind of damage per data-quality check
    run.py       seed the native stack, run the product's DAGs and summarise each run

This file imports none of them: the tests that only generate data do not load the rest of
stackctl through it.
"""
