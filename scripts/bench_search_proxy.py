"""`--proxy-epochs` in the bench: each budget's proxy shapes (mcuc.nas.proxy), trained
from scratch with the final recipe for a few epochs and cached like every bench model;
the best on held-out images is the budget's one finalist. With `--proxy-plain` each
shape's plain variant is trained too (scored with the supernet's inherited weights like
the search's candidates). The test set is never looked at."""

from __future__ import annotations

from mcuc.nas.proxy import Shape, best_of, plain_variant, shapes, with_plain
from mcuc.nas.space import SubnetConfig


def budget_shapes(c, b: int, founds: dict[int, dict]) -> list[Shape]:
    """Budget b's proxy shapes: from its own search, or from every search with
    --shared-finalists (the budgets nest); on ties its own search's candidate first."""
    order = sorted(founds if c.a.shared_finalists else [b], key=lambda bb: (bb != b, bb))
    cands = [Shape(SubnetConfig.from_dict(d["config"]), d["accuracy"], bb)
             for bb in order for d in founds[bb]["candidates"]]
    fits = c.models[b].cost
    return shapes(cands, lambda g: fits(g).fits, c.a.proxy_shapes)


def trainees(c, b: int, founds: dict[int, dict]) -> list[tuple[SubnetConfig, Shape]]:
    """Budget b's proxy trainees: each shape's candidate, and with --proxy-plain its
    plain variant after it (mcuc.nas.proxy.with_plain)."""
    chosen = budget_shapes(c, b, founds)
    if not getattr(c.a, "proxy_plain", False):
        return [(s.config, s) for s in chosen]
    cost = c.models[b].cost
    return with_plain(chosen, lambda g: plain_variant(c.space, g, lambda f: cost(f).fits,
                                                      lambda f: cost(f).macs))


def inherited(c, cfg: SubnetConfig) -> float:
    """Held-out accuracy of `cfg` with the supernet's weights, as the searches score."""
    import torch

    from bench_search_stages import supernet
    from mcuc.nas.train import subnet_accuracy

    model = supernet(c).to(c.a.device)
    with torch.no_grad():
        return subnet_accuracy(model, cfg, torch.from_numpy(c.x[c.va]).to(c.a.device),
                               torch.from_numpy(c.y[c.va]).to(c.a.device))


def proxy_pick(c, b: int, founds: dict[int, dict], only: int | None = None
               ) -> tuple[SubnetConfig | None, list[dict]]:
    """Train budget b's proxy trainees (one that two budgets share is trained once);
    (the best on held-out images, or None when `only` picks one trainee; their records)."""
    from bench_search_stages import trained

    chosen = trainees(c, b, founds)
    if only is not None:
        chosen = chosen[only:only + 1]
    recs = [{"config": g.to_dict(), "found_at": s.found_at, "plain": g != s.config,
             "inherited_acc": s.inherited if g == s.config else inherited(c, g),
             "epochs": c.a.proxy_epochs, **trained(c, "proxy", g)[1]}
            for g, s in chosen]
    if only is not None or not recs:
        return None, recs
    return chosen[best_of([r["val_acc"] for r in recs])][0], recs
