#!/usr/bin/env bash
# Local Airflow 3 for the recsys DAGs, in its own virtualenv (.venv-airflow): Airflow's pins
# conflict with the project's, so the two never share an environment. DAG tasks reach the
# project only through its CLI (.venv/bin/recsys) and spark-submit (.venv/bin/spark-submit).
#
# Idempotent: the virtualenv is built once (stamp file), `airflow db migrate` is a no-op on an
# up-to-date database. AIRFLOW_HOME (SQLite metadata DB, logs) lives under the lakehouse root.
#
#   infra/airflow/setup.sh            # build/refresh, then print the environment to export
#   source <(infra/airflow/setup.sh --env)   # only print the exports (no work)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${AIRFLOW_VENV:-$ROOT/.venv-airflow}"
LAKEHOUSE="${RECSYS_HOME:-${RECSYS_LAKEHOUSE_ROOT:-$ROOT/lakehouse}}"
AIRFLOW_VERSION="3.1.3"
# Providers the DAGs use: Spark (SparkSubmitOperator: the local and spark_cluster environments)
# and Databricks (AIRFLOW_VAR_RECSYS_ENV=cluster). Both pinned: dags/recsys_tasks.py reads the
# spark-submit exit code from the Spark hook to map it to "skipped". Databricks 7.x supports
# Airflow >= 2.10, so 3.1; installed in one resolution with apache-airflow pinned, so nothing can
# move Airflow itself.
PROVIDERS=("apache-airflow-providers-apache-spark==6.3.4" "apache-airflow-providers-databricks==7.23.0")
# The stamp names the install: changing the version or the providers re-runs it (incrementally).
STAMP="$VENV/.installed-airflow-$AIRFLOW_VERSION-$(printf '%s\n' "${PROVIDERS[@]}" | cksum | cut -d' ' -f1)"

export AIRFLOW_HOME="${AIRFLOW_HOME:-$LAKEHOUSE/_airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="${AIRFLOW__CORE__DAGS_FOLDER:-$ROOT/dags}"
export AIRFLOW__CORE__LOAD_EXAMPLES="False"
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-sqlite:///$AIRFLOW_HOME/airflow.db}"
export AIRFLOW_VAR_RECSYS_PROJECT_ROOT="${AIRFLOW_VAR_RECSYS_PROJECT_ROOT:-$ROOT}"
# Airflow 3 puts the DAG bundle's root (the DAGs folder) on sys.path in the dag processor and the
# task runner, not in `airflow dags test`; the same here, so DAG files can share dags/recsys_tasks.py.
export PYTHONPATH="$AIRFLOW__CORE__DAGS_FOLDER${PYTHONPATH:+:$PYTHONPATH}"
# The Spark connection the DAGs submit through (dags/recsys_tasks.py: AIRFLOW_VAR_RECSYS_SPARK_CONN_ID);
# an environment connection, so no secret or DB row is needed for the local master.
export AIRFLOW_CONN_SPARK_RECSYS="${AIRFLOW_CONN_SPARK_RECSYS:-{\"conn_type\": \"spark\", \"host\": \"local[2]\"\}}"

print_env() {
  for var in AIRFLOW_HOME AIRFLOW__CORE__DAGS_FOLDER AIRFLOW__CORE__LOAD_EXAMPLES \
             AIRFLOW__DATABASE__SQL_ALCHEMY_CONN AIRFLOW_VAR_RECSYS_PROJECT_ROOT AIRFLOW_CONN_SPARK_RECSYS PYTHONPATH; do
    printf 'export %s=%q\n' "$var" "${!var}"
  done
  printf 'export PATH=%q:$PATH\n' "$VENV/bin"
}

if [[ "${1:-}" == "--env" ]]; then
  print_env
  exit 0
fi

if [[ ! -f "$STAMP" ]]; then
  echo "==> building $VENV (apache-airflow==$AIRFLOW_VERSION)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q uv
  "$VENV/bin/uv" pip install --python "$VENV/bin/python" -q \
    "apache-airflow==$AIRFLOW_VERSION" "${PROVIDERS[@]}"
  touch "$STAMP"
fi

mkdir -p "$AIRFLOW_HOME"
echo "==> airflow db migrate ($AIRFLOW__DATABASE__SQL_ALCHEMY_CONN)" >&2
"$VENV/bin/airflow" db migrate >"$AIRFLOW_HOME/db-migrate.log" 2>&1 || {
  tail -n 40 "$AIRFLOW_HOME/db-migrate.log" >&2
  exit 1
}
echo "==> Airflow ready; to use it in this shell: source <($0 --env)" >&2
print_env
