"""Tests of solution/fusion.py: shapes with missing modalities, masking, gradients, time encoding, registry."""

import pytest
import torch

from solution.fusion import (
    FUSIONS,
    ConcatFusion,
    EventPointer,
    PlacePointer,
    Projector,
    Stream,
    TriModalCoAttention,
    build_fusion,
    event_tokens,
    frames_at,
    sinusoidal_time_encoding,
    time_bias,
)

INPUT_DIMS = {"video": 12, "audio": 10, "text": 8}
DIM = 16


def make_fusion(mode: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_fusion(mode, input_dims=INPUT_DIMS, dim=DIM, depth=2, heads=4).eval()


def make_stream(modality: str, B: int, N: int, seed: int = 0) -> Stream:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(B, N, INPUT_DIMS[modality], generator=g)
    times = None if modality == "text" else torch.arange(N, dtype=torch.float32).repeat(B, 1) * 0.5
    return Stream(tokens=tokens, times=times, mask=torch.ones(B, N, dtype=torch.bool))


def make_streams(B: int = 2, lengths: dict[str, int] | None = None) -> dict[str, Stream]:
    lengths = lengths or {"video": 5, "audio": 7, "text": 4}
    return {m: make_stream(m, B, n, seed=i) for i, (m, n) in enumerate(lengths.items())}


@pytest.mark.parametrize("mode", ["coattn", "concat"])
@pytest.mark.parametrize(
    "lengths",
    [
        {"video": 5, "audio": 7, "text": 4},  # all three
        {"video": 5, "text": 4},  # audio missing
        {"audio": 7, "text": 4},  # video missing
        {"video": 5},  # one modality
        {"video": 5, "audio": 0, "text": 4},  # empty audio stream
        {"video": 0, "audio": 0, "text": 3},  # only text has tokens
    ],
)
def test_shapes_and_finite(mode, lengths):
    fusion = make_fusion(mode)
    out = fusion(make_streams(B=2, lengths=lengths))
    assert set(out) == set(lengths)
    for m, n in lengths.items():
        assert out[m].shape == (2, n, DIM)
        assert torch.isfinite(out[m]).all()


@pytest.mark.parametrize("mode", ["coattn", "concat"])
def test_sample_with_fully_masked_modality_is_finite(mode):
    streams = make_streams(B=2)
    streams["audio"].mask[1] = False  # sample 1 has no audio (padded to the batch's length)
    streams["video"].mask[0] = False  # sample 0 has no video
    out = make_fusion(mode)(streams)
    assert all(torch.isfinite(h).all() for h in out.values())


@pytest.mark.parametrize("mode", ["coattn", "concat"])
def test_padding_does_not_change_real_outputs(mode):
    fusion = make_fusion(mode)
    lengths = {"video": 3, "audio": 4, "text": 2}
    alone = make_streams(B=1, lengths=lengths)
    expected = fusion(alone)

    # batch element 0 = the same sample padded with junk; element 1 = another full-length sample
    padded_lengths = {"video": 6, "audio": 9, "text": 5}
    batch = make_streams(B=2, lengths=padded_lengths)
    for m, n in lengths.items():
        s = batch[m]
        s.tokens[0, n:] = 1e3 * torch.randn_like(s.tokens[0, n:])  # junk
        s.tokens[0, :n] = alone[m].tokens[0]
        s.mask[0, n:] = False
        if s.times is not None:
            s.times[0, :n] = alone[m].times[0]
            s.times[0, n:] = 123.0
    got = fusion(batch)
    for m, n in lengths.items():
        torch.testing.assert_close(got[m][0, :n], expected[m][0], atol=1e-5, rtol=1e-5)


def test_coattn_mixes_modalities_and_concat_does_not():
    streams = make_streams(B=1)
    changed = make_streams(B=1)
    changed["audio"].tokens = changed["audio"].tokens + 1.0
    for mode, mixes in [("coattn", True), ("concat", False)]:
        fusion = make_fusion(mode)
        video_before, video_after = fusion(streams)["video"], fusion(changed)["video"]
        assert (not torch.allclose(video_before, video_after)) == mixes


def test_time_bias_is_minus_slope_times_distance_between_timed_tokens():
    slopes = torch.tensor([0.0, 2.0])
    times, timed = torch.tensor([[0.0, 1.0]]), torch.tensor([[True, True]])
    context_times, context_timed = torch.tensor([[0.5, 0.0, 3.0]]), torch.tensor([[True, False, True]])
    bias = time_bias(slopes, times, timed, context_times, context_timed)  # (1, 2, 2, 3)
    assert bias.shape == (1, 2, 2, 3)
    assert torch.equal(bias[0, 0], torch.zeros(2, 3))  # a slope of 0: a global head
    assert torch.allclose(bias[0, 1], torch.tensor([[-1.0, 0.0, -6.0], [-1.0, 0.0, -4.0]]))  # untimed key: 0


def test_coattn_links_sound_and_picture_of_the_same_moment():
    """Untrained, an audio token already hears most from the video token of its own moment (the time bias)."""
    for seed in range(3):
        fusion = make_fusion("coattn", seed)
        streams = make_streams(B=1, lengths={"video": 7, "audio": 7, "text": 4})  # both at 0, 0.5, ... 3 s
        changed = make_streams(B=1, lengths={"video": 7, "audio": 7, "text": 4})
        changed["video"].tokens[0, 4] += 3.0  # the picture at 2 s
        delta = (fusion(changed)["audio"] - fusion(streams)["audio"]).norm(dim=-1)[0]  # (7,)
        assert int(delta.argmax()) == 4, delta
        assert delta[4] > 2 * delta[[0, 1, 2, 6]].mean(), delta  # more than twice that of tokens >= 1 s away


@pytest.mark.parametrize("mode", ["coattn", "concat"])
def test_gradients_reach_every_parameter(mode):
    fusion = make_fusion(mode).train()
    out = fusion(make_streams(B=2))
    loss = sum((h * torch.randn_like(h)).sum() for h in out.values())
    loss.backward()
    missing = [name for name, p in fusion.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_time_encoding_is_shared_across_modalities():
    times = torch.tensor([[0.0, 0.5, 1.0, 7.25]])
    video = sinusoidal_time_encoding(times, 16)
    audio = sinusoidal_time_encoding(times.clone(), 16)
    assert video.shape == (1, 4, 16)
    torch.testing.assert_close(video, audio, rtol=0, atol=0)
    assert not torch.allclose(video[0, 0], video[0, 1])  # distinct times are distinguishable
    with pytest.raises(ValueError, match="even"):
        sinusoidal_time_encoding(times, 15)


def test_same_second_video_and_audio_tokens_get_the_same_time_signal():
    fusion = make_fusion("concat")
    embed = fusion.embed
    streams = {"video": make_stream("video", 1, 3), "audio": make_stream("audio", 1, 3)}
    x, _ = embed(streams)
    # remove the projection and type embedding: what remains is the time encoding
    for m in ("video", "audio"):
        x[m] = x[m] - embed.proj[m](streams[m].tokens) - embed.type_embedding[m]
    torch.testing.assert_close(x["video"], x["audio"], atol=1e-6, rtol=0)


def test_projector_zero_init_outputs_zeros():
    features = torch.randn(2, 5, INPUT_DIMS["video"])
    projector = Projector(DIM, 24, {"video": INPUT_DIMS["video"]})
    y = projector(torch.randn(2, 5, DIM), "video", features)
    assert y.shape == (2, 5, 24)
    assert torch.count_nonzero(y) == 0
    assert torch.count_nonzero(Projector(DIM, 24, zero_init=False)(torch.randn(2, 5, DIM))) > 0


def test_projector_reads_out_the_tokens_own_features():
    torch.manual_seed(0)
    projector = Projector(DIM, 24, {"video": INPUT_DIMS["video"]}, zero_init=False)
    fused, features = torch.randn(1, 3, DIM), torch.randn(1, 3, INPUT_DIMS["video"])
    with_features = projector(fused, "video", features)
    torch.testing.assert_close(with_features - projector(fused), projector.read_out["video"](features))
    moved = features.clone()
    moved[0, 1] += 1.0  # one token's features change only that token's output
    changed = (projector(fused, "video", moved) - with_features).abs().sum(-1)[0]
    assert changed[1] > 0 and changed[0] == 0 and changed[2] == 0


def test_frames_at_interpolates_between_the_frames_around_each_moment():
    cells, width = 2, 3
    frame_times = torch.tensor([0.5, 1.5, 2.5])
    frames = torch.arange(3 * cells * width, dtype=torch.float32).reshape(3, cells * width)  # (F, cells * D)
    tokens = frames.reshape(
        3 * cells, width
    )  # frame groups of `cells` tokens, as pool_video_tokens lays them
    times = frame_times.repeat_interleave(cells)
    moments = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.25, 3.0])
    got = frames_at(tokens, times, cells, moments)
    expected = torch.stack([frames[0], frames[0], (frames[0] + frames[1]) / 2, frames[1],
                            0.25 * frames[1] + 0.75 * frames[2], frames[2]])  # fmt: skip
    torch.testing.assert_close(got, expected)
    one = frames_at(tokens[:cells], times[:cells], cells, moments)  # a single frame serves every moment
    torch.testing.assert_close(one, frames[0].expand(len(moments), -1))


def test_event_tokens_pool_the_tokens_each_event_meets():
    times = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9])  # 0.2 s tokens: each spans 0.1 s either side of its time
    tokens = torch.arange(5, dtype=torch.float32)[:, None] * torch.tensor([[1.0, 10.0]])  # (5, 2)
    events = torch.tensor([[0.25, 0.45], [0.62, 0.66], [1.5, 1.6], [0.0, 0.05]])
    expected = torch.tensor([[1.5, 15.0],  # meets the tokens at 0.3 and 0.5
                             [3.0, 30.0],  # within the token at 0.7
                             [4.0, 40.0],  # after the last token's span: the nearest token
                             [0.0, 0.0]])  # fmt: skip
    torch.testing.assert_close(event_tokens(tokens, times, events), expected)
    one = event_tokens(tokens[:1], times[:1], events)  # a single token serves every event
    torch.testing.assert_close(one, tokens[:1].expand(4, -1))


def test_projector_time_aligned_path_is_gated_by_the_sound_and_zero_untrained():
    dims = {"video": INPUT_DIMS["video"], "audio": INPUT_DIMS["audio"]}
    sound, frames = torch.randn(4, dims["audio"]), torch.randn(4, 2 * dims["video"])
    assert torch.count_nonzero(Projector(DIM, 24, dims, aligned_cells=2).aligned_frames(sound, frames)) == 0
    torch.manual_seed(0)
    projector = Projector(DIM, 24, dims, zero_init=False, aligned_cells=2)
    gate = torch.sigmoid(projector.gate(sound))  # (4, 1)
    torch.testing.assert_close(projector.aligned_frames(sound, frames), gate * projector.aligned(frames))
    assert Projector(DIM, 24, {"video": dims["video"]}, aligned_cells=2).aligned_cells == 0  # needs both


def test_event_frames_read_the_frames_cells_summed_through_the_video_read_out():
    dims = {"video": INPUT_DIMS["video"], "audio": INPUT_DIMS["audio"]}
    torch.manual_seed(0)
    projector = Projector(DIM, 24, dims, zero_init=False, aligned_cells=2)
    square = torch.randn(dims["video"])
    # (1, 2 * D): the square in the first cell, the second one empty
    one_cell = torch.cat([square, torch.zeros(dims["video"])])[None]
    # as strong as the video token of the square's own cell
    torch.testing.assert_close(projector.event_frames(one_cell), projector.read_out["video"](square[None]))
    frames = torch.randn(3, 2 * dims["video"])
    expected = projector.read_out["video"](frames[:, : dims["video"]] + frames[:, dims["video"] :])
    torch.testing.assert_close(projector.event_frames(frames), expected)
    with pytest.raises(AssertionError, match="time-aligned"):
        Projector(DIM, 24, {"video": dims["video"]}, aligned_cells=2).event_frames(frames)


def test_event_pointer_picks_the_event_whose_name_the_question_uses():
    torch.manual_seed(0)
    names = torch.randn(4, 24)  # the words naming the listed events ("first", "second", ...)
    pointer = EventPointer(names)
    question = torch.cat([torch.randn(5, 24), 2 * names[1:2], torch.randn(2, 24)])  # names the second event
    weights = pointer.weights(question, 3)
    assert weights.shape == (3,) and weights.argmax() == 1 and weights[1] > 0.99
    torch.testing.assert_close(weights.sum(), torch.tensor(1.0))
    events = torch.randn(3, 24)
    torch.testing.assert_close(pointer(question, events), weights @ events)
    no_words = pointer.weights(question[:0], 3)
    torch.testing.assert_close(no_words, torch.full((3,), 1 / 3))  # the events' mean
    assert pointer.weights(question, 1).tolist() == [1.0]  # a single event is always the one asked
    pointer(question, events).sum().backward()  # names and scale train with the fusion
    assert pointer.names.grad is not None and pointer.log_scale.grad is not None
    assert Projector(DIM, 24, event_names=names).pointer is not None and Projector(DIM, 24).pointer is None


def test_place_pointer_finds_the_salient_cell_wherever_it_is():
    torch.manual_seed(0)
    cells, width = 4, 6
    place = PlacePointer(cells, width, 24)
    frames = torch.randn(3, cells * width)
    torch.testing.assert_close(place(frames), torch.zeros(3, 24))  # untrained: equal weights, centred places
    salient = torch.randn(width)
    with torch.no_grad():
        place.score.weight.copy_(salient[None])  # content along `salient` scores high, in any cell
    for cell in range(cells):
        frame = 0.1 * torch.randn(cells, width)
        frame[cell] += 3 * salient
        weights = place.weights(frame.reshape(1, -1))[0]
        assert weights.argmax() == cell and weights[cell] > 0.99
        torch.testing.assert_close(weights.sum(), torch.tensor(1.0))
    out = place(frames)
    torch.testing.assert_close(out, place.weights(frames) @ (place.places - place.places.mean(0)))
    out.sum().backward()
    assert place.score.weight.grad is not None and place.places.grad is not None
    assert Projector(DIM, 24, INPUT_DIMS, aligned_cells=2, event_place=True).place is not None
    assert Projector(DIM, 24, INPUT_DIMS, event_place=True).place is None  # no time-aligned path, no place


def test_input_statistics_standardise_each_dimension():
    embed = make_fusion("coattn").embed
    stream = make_stream("video", 1, 6)
    tokens = stream.tokens[0]  # (N, D)
    identity, _ = embed({"video": stream})
    embed.set_input_statistics("video", tokens.mean(0), tokens.std(0))
    standardised, _ = embed({"video": stream})
    assert not torch.allclose(identity["video"], standardised["video"])
    # an affine change of the features with matching statistics gives the same embedding
    moved = Stream(tokens=stream.tokens * 3 + 7, times=stream.times, mask=stream.mask)
    embed.set_input_statistics("video", (tokens * 3 + 7).mean(0), (tokens * 3 + 7).std(0))
    assert torch.allclose(embed({"video": moved})[0]["video"], standardised["video"], atol=1e-2)
    with pytest.raises(ValueError, match="video: statistics must have shape"):
        embed.set_input_statistics("video", torch.zeros(3), torch.ones(3))


def test_registry():
    assert FUSIONS["coattn"] is TriModalCoAttention and FUSIONS["concat"] is ConcatFusion
    with pytest.raises(ValueError, match="coattn, concat") as err:
        build_fusion("perceiver", input_dims=INPUT_DIMS, dim=DIM, depth=1, heads=2)
    assert "perceiver" in str(err.value)


def test_bad_inputs_raise():
    fusion = make_fusion("coattn")
    with pytest.raises(ValueError, match="unknown modality"):
        fusion({"depth": make_stream("video", 1, 2)})
    bad = make_streams(B=1)
    bad["video"].tokens = torch.randn(1, 5, 11)
    with pytest.raises(ValueError, match="width 11, expected 12"):
        fusion(bad)
    with pytest.raises(ValueError, match="batch sizes"):
        fusion({"video": make_stream("video", 1, 2), "audio": make_stream("audio", 2, 2)})


def test_video_tokens_know_their_cell_in_the_frame():
    """Two tokens with the same features and time but in different cells of the frame differ after fusion."""
    torch.manual_seed(0)
    fusion = build_fusion(
        "coattn", input_dims=INPUT_DIMS, dim=DIM, depth=2, heads=4, grid_cells={"video": 4}
    ).eval()
    # one frame, the same features in each cell
    tokens = torch.randn(1, 1, INPUT_DIMS["video"]).expand(1, 4, -1)
    times, mask = torch.zeros(1, 4), torch.ones(1, 4, dtype=torch.bool)
    with_cells = fusion({"video": Stream(tokens, times, mask, torch.arange(4)[None])})["video"][0]
    assert min((with_cells[i] - with_cells[j]).abs().max() for i in range(4) for j in range(i)) > 1e-3
    without = fusion({"video": Stream(tokens, times, mask)})["video"][0]
    torch.testing.assert_close(without, without[:1].expand(4, -1))
    with pytest.raises(ValueError, match="audio tokens have grid cells"):
        fusion({"audio": Stream(torch.randn(1, 2, INPUT_DIMS["audio"]), torch.zeros(1, 2),
                                torch.ones(1, 2, dtype=torch.bool), torch.zeros(1, 2, dtype=torch.long))})  # fmt: skip
