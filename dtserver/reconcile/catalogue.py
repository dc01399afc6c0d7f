"""The pool catalogue the reconciler publishes in the store for the API's hint verdicts:
flavor sizes come from Nova, which only the reconciler reads."""
from __future__ import annotations

from dataclasses import fields, replace

from dtserver.policy import Policy, Pool
from dtserver.store import CataloguePool, PoolCatalogue

# Derived by name, not copied field by field: CataloguePool is the part of Pool the
# API's eligibility check reads, so a field added to both is published without an edit.
_PUBLISHED = tuple(item.name for item in fields(CataloguePool) if item.name != "flavors")


def pool_catalogue(policy: Policy) -> PoolCatalogue:
    """What the API needs of `policy` to tell that no pool could ever run a job."""
    return PoolCatalogue(pools=tuple(_published(pool) for pool in policy.pools),
                         queues=policy.queues, max_cores=policy.max_cores)


def _published(pool: Pool) -> CataloguePool:
    # Flavors without their Nova id: the API has no use for it.
    return CataloguePool(
        flavors=tuple(replace(flavor, id=None) for flavor in pool.flavors),
        **{name: getattr(pool, name) for name in _PUBLISHED})
