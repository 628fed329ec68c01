"""The run of a CellProfile: ``POST .../realms/R/spaces/S/stacks/ST/profileruns``.

The body (``CellProfileRun``) names the profile, optionally the cell, and values for its
parameters. The profile is looked up in the stack, then the space, then the realm of the
URL; the cell it makes (``kukeon.api.profilerun``) is then written exactly as a cell
POSTed to ``.../cells``: the caller must be allowed to create cells there, the document is
validated, admitted against the caller's rights and the realm's security level, and
created. So a profile gives nobody more than a cell they could write themselves, and the
answer is the created Cell (201). A generated name that is already taken is drawn again.
"""

from __future__ import annotations

import logging
from functools import partial

from aiohttp import web
from pydantic import ValidationError

from kukeon.api import CellProfile, Kind, to_document
from kukeon.api.meta import quote
from kukeon.api.profilerun import (
    CellProfileRun,
    ParameterErrors,
    cell_document,
    generated_name,
    parameter_values,
)
from kukeon.api.validation import field_errors_from_pydantic
from kukeon.apiserver import queryparams
from kukeon.apiserver.fieldvalidation import FieldChecks
from kukeon.apiserver.profilelookup import find_profile, not_found
from kukeon.apiserver.request import json_answer, read_body
from kukeon.apiserver.resourcewrites import ResourceWrites
from kukeon.apiserver.status import ApiError, Cause, from_store_error
from kukeon.apiserver.statusroom import check_status_room
from kukeon.apiserver.target import Target, route_patterns
from kukeon.apiserver.writerules import check_size, document_size, parse, prepare
from kukeon.client.paths import PROFILE_RUNS
from kukeon.store import AlreadyExists, StoreError

log = logging.getLogger(__name__)

_NAME_DRAWS = 5
"""How many generated names a run tries before giving up (6 hex digits: rarely a second)."""


def profile_runs_route() -> str:
    """The route of runs: beside a stack's cells."""
    stack_object = route_patterns(Kind.STACK)[1]
    return f"{stack_object}/{PROFILE_RUNS}"


def _run_body(body: object, checks: FieldChecks) -> CellProfileRun:
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a CellProfileRun object")
    return checks.model(CellProfileRun, body, _invalid_run)


def _invalid_run(exc: ValidationError) -> ApiError:
    causes = [Cause(e.field, e.message) for e in field_errors_from_pydantic(exc)]
    return ApiError(
        400,
        "the run is invalid: " + "; ".join(f"{c.field}: {c.message}" for c in causes),
        causes=causes,
    )


class ProfileRuns(ResourceWrites):
    """The handler of profile runs, on the resource handlers' registry and rules."""

    def add_profile_routes(self, app: web.Application) -> None:
        app.router.add_post(profile_runs_route(), self.run_profile)

    async def run_profile(self, request: web.Request) -> web.StreamResponse:
        match = request.match_info
        scope = (match["realm"], match["space"], match["stack"])
        cells = Target(Kind.CELL, scope, None, None)
        self._authorize(request, "create", cells)
        dry_run = queryparams.dry_run(request)
        checks = FieldChecks(request)
        body = await read_body(request, self._settings.max_body_bytes, checks=checks)
        run = _run_body(body, checks)
        profile = await self._find_profile(run.profile, scope)
        try:
            values = parameter_values(profile, run.parameters)
        except ParameterErrors as exc:
            causes = [Cause(c.field, c.message) for c in exc.causes]
            raise ApiError(
                422, f"cannot run profile {quote(run.profile)}: {exc}", causes=causes
            ) from None
        for _ in range(1 if run.name else _NAME_DRAWS):
            name = run.name or generated_name(profile)
            document = cell_document(profile, scope=scope, name=name, values=values)
            res = parse(prepare(document, cells, name_from_url=False))
            target = cells._replace(name=name)
            await self._admit(request, target, res, None)
            check_status_room(target, res, None)
            if dry_run:
                check_size(res, target)
                await self._check_quota(res, target)
                await self._check_absent(target)
                await self._check_parent(res, target)
                return json_answer(to_document(res), status=201)
            try:
                async with self._charged(request, target, partial(document_size, res)):
                    created = await self._registry.create(res)
            except AlreadyExists:
                if run.name:
                    raise ApiError(
                        409, f"{target.label()} already exists", reason="AlreadyExists"
                    ) from None
                log.info("generated name %s is taken, drawing another", name)
                continue
            except StoreError as exc:
                raise from_store_error(exc, kind=Kind.CELL.value, name=name) from None
            return json_answer(to_document(created), status=201)
        raise ApiError(409, f"{_NAME_DRAWS} generated names were taken", reason="AlreadyExists")

    async def _find_profile(self, name: str, scope: tuple[str, str, str]) -> CellProfile:
        """The profile ``name`` of the stack, else the space, else the realm of ``scope``."""
        found = await find_profile(self._registry, name, scope)
        if found is not None:
            return found
        raise ApiError(
            404,
            not_found(name, scope),
            reason="NotFound",
            kind=Kind.CELL_PROFILE.value,
            name=name,
        )
