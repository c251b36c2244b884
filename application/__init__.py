"""Use cases of the task engine: submit, dispatch, complete and advance, recover; ports it needs."""
