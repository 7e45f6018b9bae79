# The two front-door commands: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test faults lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The demo walks Contoso through permissions and two erasures. Subjects' addresses only
# ever travel through a pipe into `dsr new`, which writes nothing but their keyed hash.
WS   ?= .
DSR  := $(BIN)/dsr -C $(WS)
# The demo keeps its state in the local file state/dsr.db on purpose; with CI set, `dsr apply`
# refuses a local state file unless told that it is intended.
APPLY := $(DSR) apply --auto-approve --allow-local-state
DEMO_PY := $(BIN)/python -m demo
NEW  := $(DSR) new erasure --email - --requested-by privacy@contoso.example
# A request received 40 days ago is past its one-month deadline: the demo completes it late.
LONG_AGO := $(shell $(PYTHON) -c "import datetime as d; print(d.date.today() - d.timedelta(days=40))")

demo: $(STAMP)
	@echo "== 1. build Contoso's four systems (SQLite, under state/demo/)"
	$(DEMO_PY) reset --workspace $(WS)
	$(DSR) validate
	@echo "== 2. permissions: access.yaml differs from the platform on purpose"
	$(DSR) plan
	$(APPLY)
	@echo "== 3. file erasures: one customer only in the CRM, one also in the shop, one received"
	@echo "==    40 days ago (completed late), one whose address has a typo (no data found)"
	$(DEMO_PY) pick-subject --workspace $(WS) --in crm-only | $(NEW) --id DSR-DEMO-0001
	$(DEMO_PY) pick-subject --workspace $(WS) --in both | $(NEW) --id DSR-DEMO-0002
	$(DEMO_PY) pick-subject --workspace $(WS) --in late | $(NEW) --id DSR-DEMO-0006 \
		--received $(LONG_AGO)
	$(DEMO_PY) pick-subject --workspace $(WS) --in crm-only | sed 's/@/x@/' \
		| $(NEW) --id DSR-DEMO-0007
	$(DSR) plan --format markdown
	$(APPLY)
	$(DSR) status
	@echo "== 4. the shop's owner deletes their customer; dsr refreshes, verifies, completes"
	$(DEMO_PY) pick-subject --workspace $(WS) --in both \
		| $(DEMO_PY) owner-delete shop --workspace $(WS)
	$(APPLY)
	@echo "== 5. dave, removed from the platform in step 2, is erased as a user: his user data goes"
	echo dave@contoso.example | $(DSR) new erasure --kind user --email - \
		--requested-by privacy@contoso.example --id DSR-DEMO-0003
	@echo "== 6. two exports: one approved by a tenant admin, one only by its own requester"
	$(DEMO_PY) pick-subject --workspace $(WS) --in export | $(DSR) new export --email - \
		--requested-by privacy@contoso.example --id DSR-DEMO-0004
	$(DSR) approve DSR-DEMO-0004 --by erin@contoso.example
	$(DEMO_PY) pick-subject --workspace $(WS) --in export-2 | $(DSR) new export --email - \
		--requested-by ben@contoso.example --id DSR-DEMO-0005
	$(DSR) approve DSR-DEMO-0005 --by ben@contoso.example
	$(DSR) plan
	$(APPLY)
	@echo "== 7. converged: nothing left to do"
	$(DSR) plan --detailed-exitcode
	$(DSR) status
	$(DSR) audit show DSR-DEMO-0006 | tail -n 6
	$(DSR) audit show DSR-DEMO-0007 | tail -n 3
	$(DSR) audit verify
	@echo "== 8. the report page for the privacy team (no personal data in it)"
	$(DSR) report --out $(WS)/state/report.html

test: $(STAMP)
	$(BIN)/pytest -q

# The fault suite at full size: every kill point, 20 random kills, concurrent applies, the
# bad-input corpus with many generated cases, tampering, the outbox, the grep. It ends with
# one table of what was tried and what held; `make test` runs it at reduced size.
faults: $(STAMP)
	DSR_FAULTS_FULL=1 $(BIN)/pytest -q -p no:cacheprovider tests/faults

lint: $(STAMP)
	$(BIN)/ruff check reconciler tests demo bench
	$(BIN)/ruff format --check reconciler tests demo bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) state/dsr.db state/demo state/outbox
