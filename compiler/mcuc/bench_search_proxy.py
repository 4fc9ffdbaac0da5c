"""`--proxy-epochs` in the bench: each budget's proxy shapes (mcuc.nas.proxy), trained
from scratch with the final recipe for a few epochs and cached like every bench model;
the best on held-out images is the budget's one finalist. The test set is never looked
at."""

from __future__ import annotations

from mcuc.nas.proxy import Shape, best_of, shapes
from mcuc.nas.space import SubnetConfig


def budget_shapes(c, b: int, founds: dict[int, dict]) -> list[Shape]:
    """Budget b's proxy shapes: from its own search, or from every search with
    --shared-finalists (the budgets nest); on ties its own search's candidate first."""
    order = sorted(founds if c.a.shared_finalists else [b], key=lambda bb: (bb != b, bb))
    cands = [Shape(SubnetConfig.from_dict(d["config"]), d["accuracy"], bb)
             for bb in order for d in founds[bb]["candidates"]]
    fits = c.models[b].cost
    return shapes(cands, lambda g: fits(g).fits, c.a.proxy_shapes)


def proxy_pick(c, b: int, founds: dict[int, dict], only: int | None = None
               ) -> tuple[SubnetConfig | None, list[dict]]:
    """Train budget b's proxy shapes (a shape two budgets share is trained once);
    (the best on held-out images, or None when `only` picks one shape; their records)."""
    from mcuc.bench_search_stages import trained

    chosen = budget_shapes(c, b, founds)
    if only is not None:
        chosen = chosen[only:only + 1]
    recs = [{"config": s.config.to_dict(), "found_at": s.found_at,
             "inherited_acc": s.inherited, "epochs": c.a.proxy_epochs,
             **trained(c, "proxy", s.config)[1]}
            for s in chosen]
    if only is not None or not recs:
        return None, recs
    return chosen[best_of([r["val_acc"] for r in recs])].config, recs
