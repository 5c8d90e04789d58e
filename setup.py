from setuptools import find_packages, setup

setup(
    name="sact-pipeline",
    version="0.1.0",
    description="Monitoring pipeline for England's monthly SACT data submissions, on Dagster",
    python_requires=">=3.11",
    packages=find_packages(exclude=["sact_pipeline_tests*"]),
    package_data={"sact_pipeline": ["data/*.csv", "data/data_docs_static/**/*"]},
    install_requires=[
        "dagster==1.13.*",
        "dagster-webserver==1.13.*",
        "dagster-postgres==0.29.*",  # brings psycopg2, the one PostgreSQL driver the project uses
        "pandas>=3.0,<4",
        "pyarrow>=20",
        "great-expectations>=1.24,<2",
        "sqlalchemy>=2.1,<2.2",
        "openpyxl>=3.1",  # the published workbook (pandas' own Excel writer needs it too)
    ],
    extras_require={
        # playwright drives the Debian chromium (`make test` installs it) for the UI tests; dagster-k8s is
        # there so the Kubernetes deployment config in deploy/ is validated by loading it; hypothesis
        # generates the published months the disclosure attacker tests try to break and fuzzes the parser;
        # pytest-xdist runs the suite on two processes (`make test`), which keeps CI within its budget.
        "test": ["pytest>=8", "nhs-number>=2.2", "playwright>=1.50", "dagster-k8s==0.29.*", "hypothesis>=6.100",
                 "pytest-xdist>=3.5"],
    },
    entry_points={"console_scripts": ["sact-pipeline=sact_pipeline.cli:main"]},
)
