"""Hidden graders of notebook 4: the Vision Transformer.

Outputs are compared in float64 with the reference weights copied in, atol=1e-6, rtol=1e-5 (only the order of
floating-point operations differs). Gradients are checked against the student's own forward pass (autograd against
centred differences along random directions, :func:`autograde.checks.assert_gradients_follow_forward`): a gradient
test proves that back-propagation works, so a forward-pass mistake costs the forward tests' points only. Every shape
has distinct sizes, so a mix-up of two dimensions cannot pass. Models are small (images of 10 to 28 pixels, two
layers) so every part runs in about a second. The checkpoint part evaluates the trained model submitted with the
notebook (see :mod:`autograde.assignments.vision_transformer.checkpoint_grading`), in tiers of accuracy.

Weighting (the points are each test's ``@pytest.mark.points``) follows how much of the concept a test proves: the
forward passes weigh most (patch vectors, encoder layer, ViT with mean and class-token pooling), then what shows
the idea (the pre-norm identity, non-square images, gradients); contracts (``contract.py``), shapes and size
checks are bookkeeping, and the modules pasted from notebooks 2 and 3 are graded in their own notebooks. The encoder
layer and the ViT are graded with the grader's stand-ins (``stand_ins.py``) when the student's earlier parts are
wrong, so each mistake costs points once, where it is made; 0-point diagnostics name the earlier part. The known
mistakes are in ``mistakes.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
import torch

from autograde import checks
from autograde.assignments.positional_encoding import reference as pe_ref
from autograde.assignments.vision_transformer import checkpoint_grading as ckpt
from autograde.assignments.vision_transformer import contract, pasted
from autograde.assignments.vision_transformer import reference as ref
from autograde.assignments.vision_transformer.mistakes import (
    CLS,
    VIT,
    layer_mistakes,
    patch_mistakes,
    rollout_mistakes,
    vit_mistakes,
)
from autograde.checks import StandIns, reference_state, seeded, student_call
from autograde.compare import assert_matches
from autograde.eval_data import RESOURCE
from autograde.worker.protocol import Call, CallResult, ModuleInfo
from autograde.worker.results import StudentError

ATOL, RTOL = 1e-6, 1e-5

# PatchEmbedding(img_size, patch_size, in_channels, embed_dim) and an input shape (N, C, H, W). In each, N, C, p,
# H/p, W/p and E differ (H = W where the image is square), so a split of the sides as (p, H/p) or a mix-up of two
# sizes cannot pass.
PATCH_CASES = [((20, 4, 3, 10), (2, 3, 20, 20)), ((18, 3, 2, 7), (1, 2, 18, 18)), ((10, 2, 3, 9), (4, 3, 10, 10))]
PATCH_NON_SQUARE = ((20, 4, 3, 10), (2, 3, 20, 28))
# TransformerEncoderLayer(embed_dim, num_heads, dim_feedforward) and an input shape (N, S, E).
LAYER_CASES = [((12, 3, 20), (2, 5, 12)), ((8, 2, 16), (1, 7, 8)), ((6, 1, 10), (3, 4, 6))]
# VisionTransformer keyword arguments (dropout is left at its default: the graders run in eval mode). The tokens S
# (patches, plus the class token), the head size D, E, the heads H, the image side and C differ in each.
VIT_MEAN = dict(
    img_size=12, patch_size=4, in_channels=2, embed_dim=24, num_layers=2, num_heads=3, dim_feedforward=20, num_classes=5
)
VIT_SMALL = dict(
    img_size=10, patch_size=2, in_channels=3, embed_dim=8, num_layers=1, num_heads=2, dim_feedforward=12, num_classes=4
)
VIT_CLS = {**VIT_MEAN, "pool": "cls"}


# -------- Reused modules: the MultiHeadAttention and PositionalEncoding pasted from notebooks 2 and 3.


@pytest.mark.part("reused")
@pytest.mark.points(1)
def test_reused_multi_head_attention(student):
    """the pasted MultiHeadAttention matches notebook 2's reference (self- and cross-attention)"""
    pasted.as_pasted(lambda: pasted.check_multi_head_attention(student))


@pytest.mark.part("reused")
@pytest.mark.points(1)
def test_reused_positional_encoding(student):
    """the pasted PositionalEncoding keeps the buffer pe (1, max_len, E) and adds it (notebook 3)"""
    pasted.as_pasted(lambda: pasted.check_positional_encoding(student))


# -------------------------------------------------------------------------------------- PatchEmbedding


def _patch_call(args, shape, seed, *, grad=False) -> Call:
    w = reference_state(ref.PatchEmbedding(*args).double(), seed)
    x = seeded(shape, seed + 1)
    L = (shape[2] // args[1]) * (shape[3] // args[1])
    g = seeded((shape[0], L, args[3]), seed + 2) if grad else None
    return Call("PatchEmbedding", args=args, inputs=(x,), state_dict=w, dtype=torch.float64, grad_outputs=g)


def _patch_run(student, args, shape, seed, *, grad=False):
    call = _patch_call(args, shape, seed, grad=grad)
    model = ref.PatchEmbedding(*args).double()
    model.load_state_dict(call.state_dict)
    return model, call.state_dict, call.inputs[0], call.grad_outputs, student_call(student, call)


def _check_patches(student, args, shape, seed):
    model, w, x, _, result = _patch_run(student, args, shape, seed)
    with torch.no_grad():
        want = model(x)
    assert_matches(
        result.output,
        want,
        what=f"PatchEmbedding{args} on input {shape}",
        atol=ATOL,
        rtol=RTOL,
        hints=patch_mistakes(model, x),
    )


@pytest.mark.part("patch_embed")
@pytest.mark.points(1)
def test_patch_embedding_layers(student):
    """PatchEmbedding has proj = nn.Linear(C*p*p, E) and no other parameters"""
    for args, _ in PATCH_CASES[:2]:
        contract.check_patch_embedding(student.describe("PatchEmbedding", args), args)


@pytest.mark.part("patch_embed")
@pytest.mark.points(2)
def test_patch_embedding_forward(student):
    """forward cuts p x p patches in row-major order, each flattened as (C, p, p), then projects them"""
    for i, (args, shape) in enumerate(PATCH_CASES):
        _check_patches(student, args, shape, seed=10 + 3 * i)


@pytest.mark.part("patch_embed")
@pytest.mark.points(1)
def test_patch_embedding_non_square(student):
    """forward handles a non-square input: (N, C, H, W) -> (N, (H/p)*(W/p), E)"""
    _check_patches(student, *PATCH_NON_SQUARE, seed=20)


@pytest.mark.part("patch_embed")
@pytest.mark.points(1)
def test_patch_embedding_rejects_indivisible_sizes(student):
    """a patch size that does not divide the image size raises a ValueError"""

    def build_then_cut() -> None:
        student.describe("PatchEmbedding", (30, 4))
        student_call(student, Call("PatchEmbedding", args=(32, 4), inputs=(seeded((1, 3, 30, 30), 21).float(),)))

    checks.must_raise(
        build_then_cut,
        ("ValueError",),
        what="PatchEmbedding(30, 4), or cutting a 30 x 30 image into 4 x 4 patches,",
        otherwise="raise a ValueError that says the patch size must divide the image size.",
    )


@pytest.mark.part("patch_embed")
@pytest.mark.points(1)
def test_patch_embedding_gradients(student):
    """gradients with respect to the images and proj agree with your forward pass"""
    args, shape = PATCH_CASES[1]
    *_, result = _patch_run(student, args, shape, 30, grad=True)
    checks.assert_gradients_follow_forward(
        lambda c: student_call(student, c),
        _patch_call(args, shape, 30, grad=True),
        result,
        ("the images",),
        seed=33,
        what=f"PatchEmbedding{args} on {shape}",
    )


# The encoder layer and the ViT are graded on their own: when the student's composition gives a wrong result with
# their own parts, it is checked again with the grader's stand-ins for the earlier parts, so an earlier part's
# mistake costs its own part only.
STAND_INS_MODULE = "autograde.assignments.vision_transformer.stand_ins"
STAND_INS_LAYER = StandIns(STAND_INS_MODULE, ("MultiHeadAttention",), ref)
STAND_INS_VIT = StandIns(
    STAND_INS_MODULE,
    ("PatchEmbedding", "PositionalEncoding", "sinusoidal_2d", "LearnedPositionalEmbedding", "TransformerEncoderLayer"),
    ref,
)


# ----------------------------------------------------------------------------- TransformerEncoderLayer


def _layer_model(args, w, with_stand_ins: bool) -> torch.nn.Module:
    """The reference layer (built with the stand-in attention when ``with_stand_ins``) with the weights ``w``."""
    with STAND_INS_LAYER.in_reference(with_stand_ins):
        model = ref.TransformerEncoderLayer(*args).double().eval()
    model.load_state_dict(w)
    return model


def _layer_call(args, shape, seed, *, grad=False, weights=None, **kwargs) -> tuple[Call, dict, torch.Tensor, ...]:
    """The call of the student's layer (``kwargs``: more fields of the Call), its weights, x and g."""
    w = weights if weights is not None else reference_state(ref.TransformerEncoderLayer(*args).double(), seed)
    x = seeded(shape, seed + 1)
    g = seeded(shape, seed + 2) if grad else None
    call = Call(
        "TransformerEncoderLayer", args=args, inputs=(x,), state_dict=w, dtype=torch.float64, grad_outputs=g, **kwargs
    )
    return call, w, x, g


def _layer_forward_check(args, shape, w, x) -> Callable[[CallResult, bool], None]:
    def check(result: CallResult, with_stand_ins: bool) -> None:
        model = _layer_model(args, w, with_stand_ins)
        with torch.no_grad():
            want = model(x)
        assert_matches(
            result.output,
            want,
            what=f"TransformerEncoderLayer{args} on {shape}",
            atol=ATOL,
            rtol=RTOL,
            hints=layer_mistakes(model, x),
        )

    return check


@pytest.mark.part("encoder_layer")
@pytest.mark.points(1)
def test_encoder_layer_structure(student):
    """the layer has norm1, self_attn, norm2, mlp (Linear, GELU, Dropout, Linear) and dropout"""
    args = LAYER_CASES[0][0]

    def check(info: ModuleInfo, _: bool) -> None:
        contract.check_encoder_layer(info, args)

    checks.describe_own_or_stand_ins(student, "TransformerEncoderLayer", STAND_INS_LAYER, check, args=args)


@pytest.mark.part("encoder_layer")
@pytest.mark.points(2)
def test_encoder_layer_forward(student):
    """forward matches the pre-norm reference (several shapes, one head, E/h not a power of two)"""
    for i, (args, shape) in enumerate(LAYER_CASES):
        call, w, x, _ = _layer_call(args, shape, 40 + 3 * i)
        checks.own_or_stand_ins(student, call, STAND_INS_LAYER, _layer_forward_check(args, shape, w, x))


@pytest.mark.part("encoder_layer")
@pytest.mark.points(1)
def test_encoder_layer_is_pre_norm(student):
    """with both branches' output layers zeroed the layer is the identity (pre-norm residual stream)"""
    args, shape = LAYER_CASES[0]
    w = reference_state(ref.TransformerEncoderLayer(*args).double(), 50)
    for name in ("self_attn.proj.weight", "self_attn.proj.bias", "mlp.3.weight", "mlp.3.bias"):
        w[name] = torch.zeros_like(w[name])
    call, _, x, _ = _layer_call(args, shape, 50, weights=w)

    def check(result: CallResult, with_stand_ins: bool) -> None:
        model = _layer_model(args, w, with_stand_ins)
        assert_matches(
            result.output,
            x,
            what="the layer with zero output projections",
            atol=ATOL,
            rtol=RTOL,
            hints=layer_mistakes(model, x, ("post_norm",)),
        )

    checks.own_or_stand_ins(student, call, STAND_INS_LAYER, check)


@pytest.mark.part("encoder_layer")
@pytest.mark.points(1)
def test_encoder_layer_gradients(student):
    """gradients with respect to the input and every weight agree with your forward pass"""
    args, shape = LAYER_CASES[1]
    call, *_ = _layer_call(args, shape, 60, grad=True)

    def check(result: CallResult, with_stand_ins: bool) -> None:
        checks.assert_gradients_follow_forward(
            lambda c: student_call(student, c),
            replace(call, substitutes=STAND_INS_LAYER.sources if with_stand_ins else {}),
            result,
            ("the input",),
            seed=63,
            what=f"TransformerEncoderLayer{args} on {shape}",
        )

    checks.own_or_stand_ins(student, call, STAND_INS_LAYER, check)


@pytest.mark.part("encoder_layer")
@pytest.mark.points(1)
def test_encoder_layer_dropout(student):
    """eval mode is deterministic; train mode applies dropout"""
    args, shape = LAYER_CASES[0]
    call, w, x, _ = _layer_call(args, shape, 70, kwargs={"dropout": 0.5})

    def check(result: CallResult, with_stand_ins: bool) -> None:
        def run(train, seed):
            again = replace(call, train=train, seed=seed, substitutes=STAND_INS_LAYER.sources if with_stand_ins else {})
            return student_call(student, again).output

        assert torch.equal(result.output, run(False, 1)), "two calls in eval mode gave different outputs"
        assert not torch.allclose(run(True, 0), result.output), (
            "with dropout=0.5 the output in train mode equals the output in eval mode: pass dropout to the "
            "attention and use self.dropout on both branches"
        )

    checks.own_or_stand_ins(student, call, STAND_INS_LAYER, check)


@pytest.mark.part("encoder_layer")
@pytest.mark.points(0)
def test_encoder_layer_with_your_own_attention(student):
    """diagnostic (no points): your TransformerEncoderLayer with your own MultiHeadAttention"""
    args, shape = LAYER_CASES[0]
    call, w, x, _ = _layer_call(args, shape, 75)
    suspects = [("MultiHeadAttention", lambda: pasted.check_multi_head_attention(student))]
    checks.blame_earlier_part(
        student, call, _layer_forward_check(args, shape, w, x), suspects, "TransformerEncoderLayer"
    )


# ----------------------------------------------------------------------------------- VisionTransformer


def _pe_length(student, kwargs: dict) -> int | None:
    """The length of the student's positional table (any max_len >= tokens works), when it has one."""
    try:
        pe_shape = student.describe("VisionTransformer", kwargs=kwargs).buffers.get("positional_encoding.pe")
    except StudentError:
        try:
            info = student.describe("VisionTransformer", kwargs=kwargs, substitutes=STAND_INS_VIT.sources)
        except StudentError:
            return None
        pe_shape = info.buffers.get("positional_encoding.pe")
    return pe_shape[1] if pe_shape is not None and len(pe_shape) == 3 else None


def _vit_model(kwargs: dict, w: dict, pe_length: int | None, with_stand_ins: bool) -> ref.VisionTransformer:
    with STAND_INS_VIT.in_reference(with_stand_ins):
        model = ref.VisionTransformer(**kwargs).double()
        if pe_length is not None and pe_length >= model.positional_encoding.pe.shape[1]:
            model.positional_encoding = ref.PositionalEncoding(kwargs["embed_dim"], max_len=pe_length).double()
    model.load_state_dict(w)
    return model.eval()


def _vit_call(student, kwargs, seed, *, grad=False, n=2):
    """The call, the weights (the reference's, ``pe`` as long as the student's), x, g and the pe length."""
    pe_length = _pe_length(student, kwargs)
    model = ref.VisionTransformer(**kwargs).double()
    if pe_length is not None and pe_length >= model.positional_encoding.pe.shape[1]:
        model.positional_encoding = pe_ref.PositionalEncoding(kwargs["embed_dim"], max_len=pe_length).double()
    w = reference_state(model, seed)
    size, C = kwargs["img_size"], kwargs["in_channels"]
    x = seeded((n, C, size, size), seed + 1)
    g = seeded((n, kwargs["num_classes"]), seed + 2) if grad else None
    call = Call("VisionTransformer", kwargs=kwargs, inputs=(x,), state_dict=w, dtype=torch.float64, grad_outputs=g)
    return call, w, x, g, pe_length


def _vit_check(kwargs, w, x, pe_length, mistakes: tuple[str, ...]) -> Callable[[CallResult, bool], None]:
    def check(result: CallResult, with_stand_ins: bool) -> None:
        model = _vit_model(kwargs, w, pe_length, with_stand_ins)
        with torch.no_grad():
            want = model(x)
        assert_matches(
            result.output,
            want,
            what=f"{checks.call_text('VisionTransformer', **kwargs)} scores",
            atol=ATOL,
            rtol=RTOL,
            hints=vit_mistakes(model, x, mistakes),
        )

    return check


def _check_vit(student, kwargs, seed, mistakes: tuple[str, ...]):
    call, w, x, _, pe_length = _vit_call(student, kwargs, seed)
    checks.own_or_stand_ins(student, call, STAND_INS_VIT, _vit_check(kwargs, w, x, pe_length, mistakes))


@pytest.mark.part("vit")
@pytest.mark.points(1)
def test_vit_structure(student):
    """the model has patch_embed, positional_encoding, layers, norm, head; cls_token only with pool='cls'"""
    for kwargs in (VIT_MEAN, VIT_CLS):

        def check(info: ModuleInfo, _: bool, kwargs=kwargs) -> None:
            contract.check_vision_transformer(info, kwargs)

        checks.describe_own_or_stand_ins(student, "VisionTransformer", STAND_INS_VIT, check, kwargs=kwargs)


@pytest.mark.part("vit")
@pytest.mark.points(1)
def test_vit_output_shape(student):
    """forward maps (N, C, H, W) to scores (N, num_classes)"""
    for kwargs in (VIT_MEAN, VIT_SMALL, VIT_CLS):
        x = seeded((3, kwargs["in_channels"], kwargs["img_size"], kwargs["img_size"]), 80).float()

        def check(result: CallResult, _: bool, kwargs=kwargs) -> None:
            out = result.output
            want = (3, kwargs["num_classes"])
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            assert got == want, (
                f"{checks.call_text('VisionTransformer', **kwargs)} gave {got} for 3 images; expected {want}"
            )

        checks.own_or_stand_ins(student, Call("VisionTransformer", kwargs=kwargs, inputs=(x,)), STAND_INS_VIT, check)


@pytest.mark.part("vit")
@pytest.mark.points(2)
def test_vit_forward_mean_pool(student):
    """with pool='mean' the scores match the reference (patches, + positions, layers, final norm, mean)"""
    for i, kwargs in enumerate((VIT_MEAN, VIT_SMALL)):
        _check_vit(student, kwargs, 90 + 3 * i, VIT)


@pytest.mark.part("vit")
@pytest.mark.points(2)
def test_vit_forward_cls_pool(student):
    """with pool='cls' the class token is prepended, encoded at position 0 and read by the head"""
    _check_vit(student, VIT_CLS, 100, CLS + VIT)


@pytest.mark.part("vit")
@pytest.mark.points(1)
def test_vit_gradients(student):
    """gradients with respect to the images and every weight agree with your forward pass (pool='cls')"""
    call, *_ = _vit_call(student, VIT_CLS, 110, grad=True)

    def check(result: CallResult, with_stand_ins: bool) -> None:
        checks.assert_gradients_follow_forward(
            lambda c: student_call(student, c),
            replace(call, substitutes=STAND_INS_VIT.sources if with_stand_ins else {}),
            result,
            ("the images",),
            seed=113,
            what=checks.call_text("VisionTransformer", **VIT_CLS),
        )

    checks.own_or_stand_ins(student, call, STAND_INS_VIT, check)


@pytest.mark.part("vit")
@pytest.mark.points(1)
@pytest.mark.parametrize("kind", list(contract.POSITIONAL_MODULES))
def test_vit_positional_encoding_choices(student, kind):
    """pos_encoding='sin2d', 'learned' or 'none' builds that encoding (the forward pass is graded with 'sin1d')"""
    kwargs = {**VIT_CLS, "pos_encoding": kind}

    def structure(info: ModuleInfo, _: bool) -> None:
        contract.check_positional_module(info, kind)

    checks.describe_own_or_stand_ins(student, "VisionTransformer", STAND_INS_VIT, structure, kwargs=kwargs)
    if kind == "none":
        return
    attr = {"sin2d": "positional_encoding.pe", "learned": "positional_encoding.pos_embed"}[kind]

    def table(result: CallResult, with_stand_ins: bool) -> None:
        with STAND_INS_VIT.in_reference(with_stand_ins):
            want = getattr(ref.VisionTransformer(**kwargs).positional_encoding, attr.split(".")[1]).double()
        got = result.attrs.get(attr)
        if kind == "learned":  # random at initialisation: only its shape is fixed
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            assert shape == tuple(want.shape), (
                f"pos_embed should have the shape (1, number of tokens with the class token, E) = "
                f"{tuple(want.shape)}; found {shape}"
            )
            return
        assert_matches(
            got.double() if isinstance(got, torch.Tensor) else got,
            want,
            what="the 2D positional table (zeros for the class token, then the patches row by row)",
            atol=1e-5,
            rtol=0,
        )

    x = seeded((1, kwargs["in_channels"], kwargs["img_size"], kwargs["img_size"]), 130).float()
    call = Call("VisionTransformer", kwargs=kwargs, inputs=(x,), attrs=(attr,))
    checks.own_or_stand_ins(student, call, STAND_INS_VIT, table)


@pytest.mark.part("vit")
@pytest.mark.points(0)
def test_vit_with_your_own_parts(student):
    """diagnostic (no points): your VisionTransformer with your own PatchEmbedding, encoding and layers"""
    call, w, x, _, pe_length = _vit_call(student, VIT_MEAN, 120)
    args, shape = LAYER_CASES[0]
    layer_call, lw, lx, _ = _layer_call(args, shape, 121)
    suspects = [
        ("PatchEmbedding", lambda: _check_patches(student, *PATCH_CASES[0], seed=122)),
        ("PositionalEncoding", lambda: pasted.check_positional_encoding(student)),
        (
            "TransformerEncoderLayer",
            lambda: _layer_forward_check(args, shape, lw, lx)(student_call(student, layer_call), False),
        ),
        ("MultiHeadAttention", lambda: pasted.check_multi_head_attention(student)),
    ]
    checks.blame_earlier_part(student, call, _vit_check(VIT_MEAN, w, x, pe_length, ()), suspects, "VisionTransformer")


# ----------------------------------------------------------------------------------- Attention rollout


def _check_rollout(student, shapes: list[tuple[int, ...]], seed: int):
    weights = [torch.softmax(seeded(shape, seed + i), dim=-1) for i, shape in enumerate(shapes)]  # (N, h, T, T)
    result = student_call(student, Call("attention_rollout", build=False, inputs=(weights,)))
    want = ref.attention_rollout(weights)
    assert_matches(
        result.output,
        want,
        what=f"attention_rollout of {len(weights)} layer(s) {shapes[0]}",
        atol=ATOL,
        rtol=RTOL,
        hints=rollout_mistakes(weights),
    )


@pytest.mark.part("rollout")
@pytest.mark.points(1)
def test_rollout_one_layer(student):
    """for one layer the rollout is 0.5 * (mean over heads + I)"""
    _check_rollout(student, [(2, 3, 5, 5)], 140)


@pytest.mark.part("rollout")
@pytest.mark.points(1)
def test_rollout_layers(student):
    """over several layers the rollout multiplies them, last layer on the left"""
    _check_rollout(student, [(2, 4, 6, 6)] * 3, 150)


# ----------------------------------------------------------- Inline question on cost (multiple choice)


@pytest.mark.part("q_cost")
@pytest.mark.points(1)
def test_inline_question_cost(student):
    """Inline Question: how the attention cost grows when the patch size halves"""
    checks.check_choice(student, "answer_q_cost", ref.ANSWER_Q_COST, "count the tokens, then the entries of T x T")


# ------------------------------------------------------------------------------ The trained checkpoint


@pytest.fixture(scope="module")
def evaluation(student, submission_dir, resources) -> ckpt.CheckpointEvaluation:
    return ckpt.graded_evaluation(student, submission_dir, resources)


@pytest.mark.part("checkpoint")
@pytest.mark.points(2)
@pytest.mark.needs(RESOURCE)
def test_checkpoint_reaches_the_target(evaluation, measure, mark_for_review):
    """your trained checkpoint reaches the target accuracy on the evaluation images (45%)"""
    measure("accuracy", evaluation.accuracy, "%", (ckpt.TARGET_ACCURACY, ckpt.SECOND_TIER_ACCURACY))
    if not evaluation.by_reference:
        mark_for_review(ckpt.REVIEW_OWN_MODEL, f"{evaluation.path.name}: {evaluation.accuracy:.2f}%")
    ckpt.check_tier(evaluation, ckpt.TARGET_ACCURACY)


@pytest.mark.part("checkpoint")
@pytest.mark.points(1)
@pytest.mark.needs(RESOURCE)
def test_checkpoint_reaches_the_second_tier(evaluation):
    """second tier: your trained checkpoint reaches 65% on the evaluation images"""
    ckpt.check_tier(evaluation, ckpt.SECOND_TIER_ACCURACY)
