using System.Text.Json.Nodes;
using Elect.Imaging;
using Elect.Selection;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Elect.Tests;

/// <summary>
/// Selection beyond the paper (issue 15): successive halving, adaptive stopping, known masks, confidence flags and the
/// evaluation counts. The default (none of them) is covered bit for bit by the parity tests.
/// </summary>
public sealed class StrategyTests(Xunit.Abstractions.ITestOutputHelper output) : IDisposable
{
    private readonly Xunit.Abstractions.ITestOutputHelper _out = output;
    private readonly string _tmp = Directory.CreateTempSubdirectory("elect-strategies-").FullName;

    public void Dispose() => Directory.Delete(_tmp, recursive: true);

    private const string Prompt = "Replace the cat with a bear";
    private static readonly long[] Seeds = [11, 22, 33, 44, 55];
    private static readonly EditOptions Steps20 = new() { InferenceSteps = 20 };
    private static readonly SelectionOptions Base = new() { StoppingStep = 8, FirstMaskStep = 0, LastMaskStep = 4 };

    private static double MaxDiff(Tensor a, Tensor b)
    {
        using var d = (a - b).abs().max();
        return d.item<float>();
    }

    [SkippableFact]
    public void PruningKeepsTheBestScoredCandidatesAndTheirTrajectories()
    {
        using var editor = Ip2pPipelineTests.LoadTiny();
        var input = Ip2pPipelineTests.Input("ip2p-input.png", 128);
        using var at5 = editor.Edit(input, Prompt, Seeds, Steps20, Base with { StoppingStep = 5 });
        using var at6 = editor.Edit(input, Prompt, Seeds, Steps20, Base with { StoppingStep = 6 });
        using var full = editor.Edit(input, Prompt, Seeds, Steps20, Base);
        using var pruned = editor.Edit(input, Prompt, Seeds, Steps20, Base with { PruneAt = [5, 6] });

        // step 5: the better half (3 of 5) by the step-5 scores; step 6: 2 of those 3 by the step-6 scores
        var afterFirst = Enumerable.Range(0, 5).OrderBy(k => at5.Bis![k]).Take(3).ToHashSet();
        var afterSecond = afterFirst.OrderBy(k => at6.Bis![k]).Take(2).ToHashSet();
        for (int k = 0; k < 5; k++)
        {
            int? expected = afterSecond.Contains(k) ? null : afterFirst.Contains(k) ? 6 : 5;
            Assert.Equal(expected, pruned.PrunedAtStep![k]);
            var reference = expected switch { 5 => at5.Bis![k], 6 => at6.Bis![k], _ => full.Bis![k] };
            Assert.True(Math.Abs(reference - pruned.Bis![k]) <= 1e-6, $"seed {Seeds[k]}: BIS {pruned.Bis![k]} vs {reference} (unpruned, step {expected ?? 8})");
            Assert.Equal(expected ?? 8, pruned.ScoredAtStep![k]);
        }
        // the final choice among the survivors is the unpruned one's when the unpruned winner survives
        int unprunedWinner = Array.IndexOf(Seeds, full.BestSeed!.Value);
        _out.WriteLine($"step-5 BIS {string.Join(" ", at5.Bis!)}; survivors {string.Join(" ", afterSecond.Select(k => Seeds[k]))}; unpruned winner {full.BestSeed}, pruned {pruned.BestSeed}");
        if (afterSecond.Contains(unprunedWinner))
        {
            Assert.Equal(full.BestSeed, pruned.BestSeed);
            double d = MaxDiff(full.Images[full.BestSeed!.Value], pruned.Images[pruned.BestSeed!.Value]);
            _out.WriteLine($"winner image max |diff| pruned vs unpruned: {d:G3}");
            Assert.True(d <= 1e-5, $"winner image differs by {d}");
        }
        else
            Assert.Equal(Seeds[afterSecond.OrderBy(k => pruned.Bis![k]).First()], pruned.BestSeed);
        // 5 x 5 + 3 x 1 + 2 x 2 to the stopping step, then 12 for the winner
        Assert.Equal(5 * 5 + 3 * 1 + 2 * 2 + 12, pruned.ModelEvaluations);
        Assert.Equal(5 * 8 + 12, pruned.PlainElectEvaluations);
        Assert.Equal(100, pruned.BestOfNEvaluations);
        Assert.Equal("elect+prune", pruned.Strategy);

        // --keep 1 at step 5: the step-5 leader is the only one finished
        using var keep1 = editor.Edit(input, Prompt, Seeds, Steps20, Base with { PruneAt = [5], Keep = 1 });
        Assert.Equal(Seeds[Enumerable.Range(0, 5).OrderBy(k => at5.Bis![k]).First()], keep1.BestSeed);
        Assert.Equal(5 * 5 + 1 * 3 + 12, keep1.ModelEvaluations);
    }

    [Fact]
    public void AdaptiveStoppingRuleOnConstructedScores()
    {
        // leaders by check: 0, 1, 1, 1, 1 (steps 20, 22, ..., 28); margins grow
        ScoreCheck[] checks =
        [
            new(20, 0, 0.10), new(22, 1, 0.01), new(24, 1, 0.015), new(26, 1, 0.03), new(28, 1, 0.04),
        ];
        // patience 3, margin 0.02: leader 1 is first at 22, 24, 26 and the margin at 26 is 0.03
        Assert.Equal(26, AdaptiveStopping.StopStep(checks, patience: 3, minMargin: 0.02));
        // margin 0.035: 26 is not enough, 28 is
        Assert.Equal(28, AdaptiveStopping.StopStep(checks, patience: 3, minMargin: 0.035));
        // patience 1, margin 0.05: the first check already
        Assert.Equal(20, AdaptiveStopping.StopStep(checks, patience: 1, minMargin: 0.05));
        // never fires: the last check (the maximum step)
        Assert.Equal(28, AdaptiveStopping.StopStep(checks, patience: 5, minMargin: 0));
        Assert.False(AdaptiveStopping.ShouldStop(checks[..2], 2, 0));
        Assert.True(AdaptiveStopping.ShouldStop(checks[..3], 2, 0.015));

        // the leader and its relative margin from scores; candidates are seed indices
        var c = ScoreCheck.Of(30, [4, 1, 3], [0.20, 0.10, 0.12]);
        Assert.Equal((30, 1), (c.Step, c.Leader));
        Assert.Equal(0.2, c.Margin, 12);
        Assert.Equal(double.PositiveInfinity, ScoreCheck.Of(30, [2], [0.3]).Margin);

        var o = new SelectionOptions { AutoStop = true, LastMaskStep = 20, AutoStopInterval = 5 };
        Assert.Equal([20, 25, 30], o.AutoStopChecks(30));
        Assert.Equal(30, o.DefaultMaxStop(100, rectifiedFlow: false));
        Assert.Equal(40, o.DefaultMaxStop(100, rectifiedFlow: true));
    }

    [SkippableFact]
    public void AdaptiveStoppingStopsWhereTheRuleSaysAndMatchesAFixedStop()
    {
        using var editor = Ip2pPipelineTests.LoadTiny();
        var input = Ip2pPipelineTests.Input("ip2p-input.png", 128);
        var auto = Base with { AutoStop = true, AutoStopInterval = 1, AutoStopMaxStep = 8 };
        // patience 1, margin 0: the first check (the end of the mask window, step 4)
        using var early = editor.Edit(input, Prompt, Seeds, Steps20, auto with { AutoStopPatience = 1, AutoStopMargin = 0 });
        using var fixed4 = editor.Edit(input, Prompt, Seeds, Steps20, Base with { StoppingStep = 4 });
        Assert.Equal(4, early.StoppingStep);
        Assert.Equal([4], early.StopChecks!.Select(s => s.Step));
        Assert.Equal(fixed4.BestSeed, early.BestSeed);
        for (int k = 0; k < 5; k++) Assert.True(Math.Abs(fixed4.Bis![k] - early.Bis![k]) <= 1e-6, $"BIS of seed {Seeds[k]}");
        double d = MaxDiff(fixed4.Images[fixed4.BestSeed!.Value], early.Images[early.BestSeed!.Value]);
        _out.WriteLine($"auto stop at 4 vs fixed 4: winner image max |diff| {d:G3}");
        Assert.True(d <= 1e-5, $"winner image differs by {d}");
        Assert.Equal(5 * 4 + 16, early.ModelEvaluations);

        // an unreachable margin: every check 4..8, then the maximum step
        using var late = editor.Edit(input, Prompt, Seeds, Steps20, auto with { AutoStopMargin = 1e9 });
        Assert.Equal(8, late.StoppingStep);
        Assert.Equal([4, 5, 6, 7, 8], late.StopChecks!.Select(s => s.Step));
        using var fixed8 = editor.Edit(input, Prompt, Seeds, Steps20, Base);
        Assert.Equal(fixed8.BestSeed, late.BestSeed);
        for (int k = 0; k < 5; k++) Assert.True(Math.Abs(fixed8.Bis![k] - late.Bis![k]) <= 1e-6, $"BIS of seed {Seeds[k]}");
        // the rule over the engine's own checks names the step it stopped at
        Assert.Equal(late.StoppingStep, AdaptiveStopping.StopStep(late.StopChecks!, 3, 1e9));
        Assert.Equal(5 * 8 + 12, late.ModelEvaluations);
        Assert.Equal("elect+auto-stop", late.Strategy);
    }

    /// <summary>PyTorch's bilinear upsampling (align_corners false) of one coordinate: (i0, i1, weight of i1).</summary>
    private static (int, int, double) Source(int dst, int srcSize, int dstSize)
    {
        double s = Math.Max(0, (dst + 0.5) * srcSize / dstSize - 0.5);
        int i0 = (int)Math.Floor(s);
        int i1 = Math.Min(i0 + 1, srcSize - 1);
        return (i0, i1, s - i0);
    }

    [Fact]
    public void KnownMaskEntersTheBisAsTheFormulaSays()
    {
        Elect.Modeling.TorchRuntime.Initialize();
        // an 8x8 image, a 4x4 latent grid: the mask is averaged over 2x2 cells, 1 - M is upsampled bilinearly
        const int H = 8, W = 8, h = 4, w = 4;
        var maskValues = new float[H * W];
        for (int y = 0; y < H; y++) for (int x = 0; x < W; x++) maskValues[y * W + x] = x >= 3 && x < 7 && y >= 2 ? 1f : 0f;
        var known = new KnownMask(W, H, maskValues);
        using var map = known.AtLatentResolution(h, w, CPU);
        var cells = new double[h, w];
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++)
            {
                cells[i, j] = (maskValues[2 * i * W + 2 * j] + maskValues[2 * i * W + 2 * j + 1] + maskValues[(2 * i + 1) * W + 2 * j] + maskValues[(2 * i + 1) * W + 2 * j + 1]) / 4.0;
                Assert.Equal(cells[i, j], map[i, j].item<float>(), 6);
            }
        using var input = torch.rand([1, 3, H, W], generator: new Generator(1)) * 2 - 1;
        using var estimates = torch.rand([2, 3, H, W], generator: new Generator(2)) * 2 - 1;
        using var bis = ElectMath.Bis(input, estimates, map);
        var inp = input.data<float>().ToArray();
        var est = estimates.data<float>().ToArray();
        for (int n = 0; n < 2; n++)
        {
            double num = 0, den = 0;
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                {
                    var (y0, y1, wy) = Source(y, h, H);
                    var (x0, x1, wx) = Source(x, w, W);
                    double m = (1 - wy) * ((1 - wx) * cells[y0, x0] + wx * cells[y0, x1]) + wy * ((1 - wx) * cells[y1, x0] + wx * cells[y1, x1]);
                    double background = 1 - m, diff = 0;
                    for (int c = 0; c < 3; c++) diff += Math.Abs(inp[(c * H + y) * W + x] - est[((n * 3 + c) * H + y) * W + x]);
                    num += diff / 3 * background;
                    den += background;
                }
            Assert.Equal(num / den, bis[n].item<float>(), 5);
        }
        Assert.Contains("no background", Assert.Throws<ArgumentException>(() => new KnownMask(2, 1, [1f, 1f])).Message);

        // PIE-Bench RLE: the ELECT repository's rle_decode (no border), fitted like the image
        var rle = KnownMask.FromRle([2, 3, 10, 1], imageWidth: 4, imageHeight: 4, width: 4, height: 4);
        Assert.Equal(new float[] { 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0 }, rle.Values);
    }

    [SkippableFact]
    public void KnownMaskReplacesTheEstimatedMapInTheScore()
    {
        using var editor = Ip2pPipelineTests.LoadTiny();
        var input = Ip2pPipelineTests.Input("ip2p-input.png", 128);
        using var estimated = editor.Edit(input, Prompt, Seeds, Steps20, Base);
        var half = new float[128 * 128];
        for (int y = 0; y < 128; y++) for (int x = 0; x < 64; x++) half[y * 128 + x] = 1f;
        using var known = editor.Edit(input, Prompt, Seeds, Steps20, Base with { KnownMask = new KnownMask(128, 128, half) });
        // the same trajectories and estimated map, other scores
        TensorAssert.Close(estimated.RelevanceMap!, known.RelevanceMap!, 0, "estimated relevance map");
        Assert.Contains(Enumerable.Range(0, 5), k => Math.Abs(estimated.Bis![k] - known.Bis![k]) > 1e-4);
        Assert.Equal(0.5, known.Confidence!.MaskCoverage, 6);
        Assert.Equal("elect+known-mask", known.Strategy);
        Assert.Equal(estimated.ModelEvaluations, known.ModelEvaluations);

        // a mask that marks nothing: the map is nearly empty, and BIS is the plain mean difference
        using var none = editor.Edit(input, Prompt, Seeds, Steps20, Base with { KnownMask = new KnownMask(128, 128, new float[128 * 128]) });
        Assert.Contains("mask_nearly_empty", none.Confidence!.Flags);
    }

    [Fact]
    public void ConfidenceFlagsFireOnConstructedCases()
    {
        var clear = SelectionConfidence.Of([0.20, 0.10, 0.15], maskCoverage: 0.3);
        Assert.Empty(clear.Flags);
        Assert.Equal(0.05, clear.Margin!.Value, 12);
        Assert.Equal(0.5, clear.RelativeMargin!.Value, 12);
        Assert.Equal(1.0, clear.Spread, 12);

        var close = SelectionConfidence.Of([0.1000, 0.1010, 0.1015], maskCoverage: 0.3);   // spread 1.5% < 2%
        Assert.Equal(["candidates_close"], close.Flags);
        Assert.Equal(["mask_nearly_empty"], SelectionConfidence.Of([0.1, 0.2], maskCoverage: 0.005).Flags);
        Assert.Equal(["candidates_close", "mask_nearly_full"], SelectionConfidence.Of([0.1, 0.1], maskCoverage: 0.95).Flags);
        var single = SelectionConfidence.Of([0.1], maskCoverage: 0.3);
        Assert.Null(single.Margin);
        Assert.Empty(single.Flags);
    }

    [Fact]
    public void OptionsAreValidatedWithTheirNames()
    {
        static string Error(SelectionOptions o) => Assert.ThrowsAny<ArgumentException>(() => o.Validate(20)).Message;
        Assert.Contains("SelectionOptions.PruneAt", Error(Base with { PruneAt = [8] }));
        Assert.Contains("SelectionOptions.PruneAt", Error(Base with { PruneAt = [6, 5] }));
        Assert.Contains("SelectionOptions.PruneAt", Error(Base with { PruneAt = [0] }));
        Assert.Contains("SelectionOptions.Keep", Error(Base with { Keep = 2 }));
        Assert.Contains("SelectionOptions.Keep", Error(Base with { PruneAt = [5], Keep = 0 }));
        Assert.Contains("SelectionOptions.AutoStopInterval", Error(Base with { AutoStop = true, AutoStopInterval = 0 }));
        Assert.Contains("SelectionOptions.AutoStopPatience", Error(Base with { AutoStop = true, AutoStopPatience = 0 }));
        Assert.Contains("SelectionOptions.AutoStopMargin", Error(Base with { AutoStop = true, AutoStopMargin = double.NaN }));
        Assert.Contains("SelectionOptions.AutoStopMaxStep", Error(Base with { AutoStop = true, AutoStopMaxStep = 21 }));
        (Base with { AutoStop = true, StoppingStep = 99 }).Validate(20);   // the fixed stopping step is ignored
        Assert.Equal(3, Base.KeptAtPrune(5));
        Assert.Equal(1, Base.KeptAtPrune(1));
    }

    [SkippableFact]
    public void StrategiesLeaveNoLiveTensors()
    {
        using var editor = Ip2pPipelineTests.LoadTiny();
        var input = Ip2pPipelineTests.Input("ip2p-input.png", 128);
        var engine = new ElectEngine(editor.Model);
        var half = new float[128 * 128];
        for (int k = 0; k < half.Length / 2; k++) half[k] = 1f;
        var selection = new SelectionOptions
        {
            LastMaskStep = 2, PruneAt = [3], AutoStop = true, AutoStopInterval = 1, AutoStopPatience = 2, AutoStopMargin = 0, AutoStopMaxStep = 6,
            KnownMask = new KnownMask(128, 128, half),
        };
        void Once(int _)
        {
            using var condition = editor.Model.Prepare(input, Prompt);
            using var result = engine.RunElect(condition, [1, 2, 3, 4], new EditOptions { InferenceSteps = 8 }, selection);
            Assert.Equal(3, result.StoppingStep);   // checks at 2 and 3, the same leader (patience 2, margin 0)
            Assert.Equal(4 * 3 + 5, result.ModelEvaluations);
        }
        LeakCheck.NoTensorsLeftAlive(Once, 2);
    }

    [SkippableFact]
    public void DatasetRunScoresOutsideEachItemsMaskAndListsFlaggedItems()
    {
        var dir = Path.Combine(_tmp, "pie");
        Directory.CreateDirectory(Path.Combine(dir, "annotation_images"));
        File.Copy(Path.Combine(Fixtures.Require(), "models", "ip2p-input.png"), Path.Combine(dir, "annotation_images", "cat.png"));
        // item a: the left half of the 128x128 image is the edit (start, length per row); item b has no mask
        var rle = string.Join(", ", Enumerable.Range(0, 128).Select(y => $"{y * 128}, 64"));
        File.WriteAllText(Path.Combine(dir, "mapping_file.json"),
            "{\"a\": {\"image_path\": \"cat.png\", \"editing_instruction\": \"" + Prompt + "\", \"mask\": [" + rle + "]}, " +
            "\"b\": {\"image_path\": \"cat.png\", \"editing_instruction\": \"" + Prompt + "\"}}");
        var outDir = Path.Combine(_tmp, "pie-out");
        var (code, _, stderr) = CliHarness.Run(["run-dataset", "--dataset-dir", dir, "--model-path", Fixtures.Ip2pTiny, "--device", "cpu",
            "--output-dir", outDir, "--log-level", "warning", "--resolution", "128", "--inference-steps", "6", "--select-one-seed",
            "--candidate-seeds", "1", "2", "--stopping-step", "3", "--last-step-for-mask-extraction", "2", "--use-dataset-mask"]);
        Assert.True(code == 3, stderr);
        var summary = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "summary.json")))!;
        var a = summary["results"]!.AsArray().Single()!;
        Assert.Equal("a", a["input"]!.GetValue<string>());
        Assert.Equal("elect+known-mask", a["strategy"]!.GetValue<string>());
        Assert.Equal(0.5, a["confidence"]!["mask_coverage"]!.GetValue<double>(), 6);
        Assert.Equal(2 * 3 + 3, summary["nfe_plain_elect"]!.GetValue<long>());
        Assert.NotNull(summary["review"]);
        Assert.Contains("the item has no mask", summary["failures"]!.AsArray().Single()!["error"]!.GetValue<string>());
        Assert.Equal("dataset-mask", JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "run_manifest.json")))!["strategy"]!.GetValue<string>());
    }

    [SkippableFact]
    public void CliReportsTheStrategyItsEvaluationsAndConfidence()
    {
        var input = Path.Combine(Fixtures.Require(), "models", "ip2p-input.png");
        var maskFile = Path.Combine(_tmp, "known.png");
        var mask = new RgbImage(128, 128);
        for (int i = 0; i < 128 * 64 * 3; i++) mask.Data[i] = 255;   // the top half is the edit
        mask.SavePng(maskFile);
        var report = Path.Combine(_tmp, "report.json");
        string[] common = ["--model-path", Fixtures.Ip2pTiny, "--device", "cpu", "--output-dir", Path.Combine(_tmp, "out"), "--log-level", "warning",
            "--resolution", "128", "--inference-steps", "20", "--candidate-seeds", "11", "22", "33", "44", "55",
            "--stopping-step", "8", "--last-step-for-mask-extraction", "4"];
        var (code, _, stderr) = CliHarness.Run(["run-single", "--input", input, "--instruction", Prompt, .. common,
            "--select-one-seed", "--prune-at", "5", "--known-mask", maskFile, "--report", report]);
        Assert.True(code == 0, stderr);
        var json = JsonNode.Parse(File.ReadAllText(report))!;
        Assert.Equal("elect+prune+known-mask", json["strategy"]!.GetValue<string>());
        Assert.Equal(5 * 5 + 3 * 3 + 12, json["nfe"]!.GetValue<long>());
        Assert.Equal(5 * 8 + 12, json["nfe_plain_elect"]!.GetValue<long>());
        Assert.Equal(100, json["nfe_best_of_n"]!.GetValue<long>());
        var cands = json["candidates"]!.AsArray();
        Assert.Equal(2, cands.Count(c => c!["pruned_at_step"]?.GetValue<int>() == 5));
        Assert.Equal(0.5, json["confidence"]!["mask_coverage"]!.GetValue<double>(), 6);
        Assert.NotNull(json["confidence"]!["relative_margin"]);

        // the options beyond the paper need --select-one-seed, and their errors name the flags
        var (c2, _, e2) = CliHarness.Run(["run-single", "--input", input, "--instruction", Prompt, .. common, "--prune-at", "5"]);
        Assert.Equal(1, c2);
        Assert.Contains("--prune-at changes ELECT's selection; add --select-one-seed", e2);
        var (c3, _, e3) = CliHarness.Run(["run-single", "--input", input, "--instruction", Prompt, .. common, "--select-one-seed", "--prune-at", "9"]);
        Assert.Equal(1, c3);
        Assert.Contains("elect: error: --prune-at steps must lie above --first-step-for-mask-extraction (0) and below the stopping step (8), got 9", e3);
        var (c4, _, e4) = CliHarness.Run(["run-single", "--input", input, "--instruction", Prompt, .. common.Select(a => a == "8" ? "soon" : a), "--select-one-seed"]);
        Assert.Equal(1, c4);
        Assert.Contains("--stopping-step must be a step number or 'auto'", e4);
    }
}
