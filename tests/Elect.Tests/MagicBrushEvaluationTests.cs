using System.Security.Cryptography;
using Xunit;
using Elect.Evaluation;
using Elect.Imaging;
using System.Text.Json;
using Elect.Modeling;
using Elect.Runner;
using static TorchSharp.torch;

namespace Elect.Tests;

/// <summary>
/// The MagicBrush test set's metrics (OSU-NLP-Group/MagicBrush evaluation/image_eval.py). Goldens:
/// scripts/goldens/make_magicbrush_goldens.py (the reference's lines with torchvision's transforms on PIL images, the
/// Hub conversions of CLIP ViT-B/32 and DINO ViT-S/16 in tiny random form, torch.hub DINO's forward re-expressed).
/// </summary>
public sealed class MagicBrushMetricTests
{
    private static readonly Lazy<Dictionary<string, Tensor>> Golden = new(() =>
    {
        TorchRuntime.Initialize();
        var g = SafeTensors.Load(Repo.Data("magicbrush", "magicbrush-golden.safetensors"));
        foreach (var t in g.Values) t.DetachFromDisposeScope();
        return g;
    });

    public MagicBrushMetricTests() => TorchRuntime.Initialize();

    private const int Pairs = 4;

    private static RgbImage Image(string name)
    {
        var t = Golden.Value[name];
        return new RgbImage((int)t.shape[1], (int)t.shape[0], t.contiguous().data<byte>().ToArray());
    }

    private static string Sha(byte[] data) => Convert.ToHexStringLower(SHA256.HashData(data));

    private static string GoldenSha(string name) => Convert.ToHexStringLower(Golden.Value[name].data<byte>().ToArray());

    private static double Scalar(string name) => Golden.Value[name].item<double>();

    private static void Close(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, double tol, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worst = 0;
        for (int i = 0; i < expected.Length; i++) worst = Math.Max(worst, Math.Abs(expected[i] - actual[i]));
        Assert.True(worst <= tol, $"{what}: max |diff| {worst:G3} > {tol:G3}");
    }

    /// <summary>Every 16th row and column of CHW values, as the goldens store them.</summary>
    private static float[] Sub(float[] chw, int size)
    {
        var r = new List<float>();
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < size; y += 16)
                for (int x = 0; x < size; x += 16)
                    r.Add(chw[(c * size + y) * size + x]);
        return r.ToArray();
    }

    [Fact]
    public void L1AndL2ResizeTheGeneratedImageToTheGroundTruthWithPillowsBicubic()
    {
        for (int i = 0; i < Pairs; i++)
        {
            var gen = Image($"p{i}.gen");
            var gt = Image($"p{i}.gt");
            Assert.Equal(GoldenSha($"p{i}.resized_sha"), Sha(MagicBrushMetrics.ToGroundTruthSize(gen, gt).Data));
            Assert.Equal(Scalar($"p{i}.l1"), MagicBrushMetrics.L1(gen, gt), 1e-6);
            Assert.Equal(Scalar($"p{i}.l2"), MagicBrushMetrics.L2(gen, gt), 1e-6);
        }
    }

    [Fact]
    public void ClipAndDinoPreprocessingEqualTorchvisionOnPilImages()
    {
        using var clip = MagicBrushClip.Load(Repo.Data("magicbrush", "clip-b32"));
        foreach (var name in Enumerable.Range(0, Pairs).SelectMany(i => new[] { $"p{i}.gen", $"p{i}.gt" }))
        {
            var img = Image(name);
            var crop = TorchvisionTransforms.CenterCrop(TorchvisionTransforms.ResizeShorter(img, 224), 224);
            Assert.Equal(GoldenSha($"{name}.clip_crop_sha"), Sha(crop.Data));
            Close(Golden.Value[$"{name}.clip_pixels_sub"].data<float>().ToArray(), Sub(clip.PreprocessValues(img), 224), 0, $"{name} CLIP pixels");
            var dcrop = TorchvisionTransforms.CenterCrop(TorchvisionTransforms.ResizeShorter(img, 256), 224);
            Assert.Equal(GoldenSha($"{name}.dino_crop_sha"), Sha(dcrop.Data));
            Close(Golden.Value[$"{name}.dino_pixels_sub"].data<float>().ToArray(), Sub(MagicBrushDino.PreprocessValues(img), 224), 0, $"{name} DINO pixels");
        }
    }

    [Theory]
    [InlineData(150, 100, 224, 336, 224)]
    [InlineData(97, 131, 224, 224, 302)]
    [InlineData(64, 64, 256, 256, 256)]
    [InlineData(129, 150, 256, 256, 297)]
    [InlineData(3, 1000, 224, 224, 74666)]
    public void ResizeShorterFollowsTorchvisionsOutputSize(int w, int h, int size, int ew, int eh) =>
        Assert.Equal((ew, eh), TorchvisionTransforms.ShorterSideSize(w, h, size));

    [Fact]
    public void CenterCropRoundsHalfToEvenAndPadsSmallImages()
    {
        var img = new RgbImage(5, 4);
        for (int i = 0; i < img.Data.Length; i++) img.Data[i] = (byte)(i / 3);
        var c = TorchvisionTransforms.CenterCrop(img, 2);   // left round(1.5) = 2, top round(1.0) = 1
        Assert.Equal(new byte[] { 7, 7, 7, 8, 8, 8, 12, 12, 12, 13, 13, 13 }, c.Data);
        var p = TorchvisionTransforms.CenterCrop(img, 7);   // padded by (1, 1, 1, 2), nothing left to crop
        Assert.Equal((7, 7), (p.Width, p.Height));
        Assert.Equal(0, p.Data[0]);
        Assert.Equal(img.Data[0], p.Data[(1 * 7 + 1) * 3]);
    }

    [Fact]
    public void ClipImageFeaturesAndClipIMatchTheReference()
    {
        using var clip = MagicBrushClip.Load(Repo.Data("magicbrush", "clip-b32"));
        for (int i = 0; i < Pairs; i++)
        {
            var fg = clip.ImageFeatures(Image($"p{i}.gen"));
            var ft = clip.ImageFeatures(Image($"p{i}.gt"));
            Close(Golden.Value[$"p{i}.gen.clip_features"].data<float>().ToArray(), fg, 1e-4, $"pair {i} CLIP gen");
            Close(Golden.Value[$"p{i}.gt.clip_features"].data<float>().ToArray(), ft, 1e-4, $"pair {i} CLIP gt");
            Assert.Equal(Scalar($"p{i}.clip-i"), MagicBrushMetrics.Cosine(fg, ft), 1e-4);
        }
    }

    [Fact]
    public void DinoClsFeaturesMatchTorchHubsForwardWithItsLayerNormEps()
    {
        using var dino = MagicBrushDino.Load(Repo.Data("magicbrush", "dino-s16"));
        for (int i = 0; i < Pairs; i++)
        {
            var fg = dino.Features(Image($"p{i}.gen"));
            var ft = dino.Features(Image($"p{i}.gt"));
            Close(Golden.Value[$"p{i}.gen.dino_features"].data<float>().ToArray(), fg, 1e-4, $"pair {i} DINO gen");
            Close(Golden.Value[$"p{i}.gt.dino_features"].data<float>().ToArray(), ft, 1e-4, $"pair {i} DINO gt");
            Assert.Equal(Scalar($"p{i}.dino"), MagicBrushMetrics.Cosine(fg, ft), 1e-5);
        }
    }

    [Fact]
    public void DinoWithTheHubConfigsLayerNormEpsIsFurtherFromTorchHub()
    {
        // facebook/dino-vits16's config.json says layer_norm_eps 1e-12 (transformers' default); DINO's model uses 1e-6
        using var asConfigured = Elect.Models.Vision.DinoVit.FromPretrained(Repo.Data("magicbrush", "dino-s16"));
        Assert.Equal(1e-12, asConfigured.Config.LayerNormEps);
        using var dino = MagicBrushDino.Load(Repo.Data("magicbrush", "dino-s16"));
        var img = Image("p0.gen");
        var expected = Golden.Value["p0.gen.dino_features"].data<float>().ToArray();
        using var x = tensor(MagicBrushDino.PreprocessValues(img), [1, 3, 224, 224]);
        using var cls = asConfigured.ClsOutput(x);
        var configured = cls.data<float>().ToArray();
        var ours = dino.Features(img);
        double Worst(float[] a) => a.Select((v, i) => Math.Abs(v - expected[i])).Max();
        Assert.True(Worst(ours) < 1e-6, $"eps 1e-6: {Worst(ours)}");
        Assert.True(Worst(configured) > 2e-6, $"eps 1e-12: {Worst(configured)}");
    }

    [Fact]
    public void AMinimalClipModelConfigTakesTransformersDefaultsWhichAreViTB32()
    {
        // how transformers 4.3x saves a CLIPModel derived from openai/clip-vit-base-patch32: only non-default keys
        var dir = Directory.CreateTempSubdirectory("elect-clipb32-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "config.json"), """
                {"architectures": ["CLIPModel"], "initializer_factor": 1.0, "logit_scale_init_value": 2.6592, "model_type": "clip",
                 "projection_dim": 512, "text_config": {"bos_token_id": 0, "dropout": 0.0, "eos_token_id": 2, "model_type": "clip_text_model"},
                 "torch_dtype": "float32", "transformers_version": "4.38.0", "vision_config": {"dropout": 0.0, "model_type": "clip_vision_model"}}
                """);
            var v = Elect.Models.Vision.ClipVisionConfig.Load(Path.Combine(dir, "config.json"));
            Assert.Equal((768, 3072, 12, 12, 224, 32, 512), (v.HiddenSize, v.IntermediateSize, v.NumAttentionHeads, v.NumHiddenLayers, v.ImageSize, v.PatchSize, v.ProjectionDim));
            var full = ModelConfig.Load(Path.Combine(dir, "config.json"));
            var t = Elect.Models.TextEncoders.ClipTextConfig.From(new ModelConfig(full.Raw("text_config")!.Value, "text_config"));
            Assert.Equal((49408, 512, 2048, 8, 12, 2L), (t.VocabSize, t.HiddenSize, t.IntermediateSize, t.NumAttentionHeads, t.NumHiddenLayers, t.EosTokenId));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void DinoNeedsA224Model()
    {
        var e = Assert.Throws<ArgumentException>(() => MagicBrushDino.Load(Repo.Data("dino-tiny")));
        Assert.Contains("224x224", e.Message);
    }

    [SkippableFact]
    public void ClipTTokenisesLikeClipTokenizeAndMatchesTheReference()
    {
        var fixtures = Fixtures.Require();   // the CLIP tokenizer files
        using var clip = MagicBrushClip.Load(Repo.Data("magicbrush", "clip-b32"), Path.Combine(fixtures, "models", "ip2p-tiny", "tokenizer"));
        var captions = File.ReadAllLines(Repo.Data("magicbrush", "captions.txt"));
        for (int i = 0; i < Pairs; i++)
        {
            Assert.Equal(Golden.Value[$"p{i}.token_ids"].data<long>().ToArray(), clip.TokenIds(captions[i]));
            var text = clip.TextFeatures(captions[i]);
            Close(Golden.Value[$"p{i}.text_features"].data<float>().ToArray(), text, 1e-4, $"pair {i} text");
            Assert.Equal(Scalar($"p{i}.clip-t"), MagicBrushMetrics.Cosine(clip.ImageFeatures(Image($"p{i}.gen")), text), 1e-4);
            Assert.Equal(Scalar($"p{i}.clip-t_oracle"), MagicBrushMetrics.Cosine(clip.ImageFeatures(Image($"p{i}.gt")), text), 1e-4);
        }
        var longIds = clip.TokenIds(string.Join(" ", Enumerable.Repeat("house", 100)));
        Assert.Equal(77, longIds.Length);
        Assert.Equal(49407, longIds[^1]);
    }
}

/// <summary>The MagicBrush layouts (<see cref="Elect.Datasets.EditDataset"/>) and <c>elect evaluate</c> on a small MagicBrush-style folder.</summary>
public sealed class MagicBrushEvaluateTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("elect-mbeval-").FullName;

    public MagicBrushEvaluateTests() => TorchRuntime.Initialize();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly string[] Keys = ["30_1", "139_1", "139_inde_2", "139_inde_3"];

    private static RgbImage Pattern(int w, int h, int seed)
    {
        var img = new RgbImage(w, h);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int c = 0; c < 3; c++)
                    img.Data[(y * w + x) * 3 + c] = (byte)((x * (7 + seed) + y * (3 + c) + seed * 41 + c * 60) % 256);
        return img;
    }

    /// <summary>The published test-set layout: test/edit_sessions.json, test/images/{id}/..., both description files.</summary>
    private string MakeTestSet()
    {
        var root = Path.Combine(_dir, "magicbrush");
        var test = Path.Combine(root, "test");
        var sessions = new Dictionary<string, object>
        {
            ["30"] = new[] { new Dictionary<string, string> { ["input"] = "30-input.png", ["mask"] = "30-mask1.png", ["output"] = "30-output1.png", ["instruction"] = "make the sky pink" } },
            ["139"] = new[]
            {
                new Dictionary<string, string> { ["input"] = "139-input.png", ["mask"] = "139-mask1.png", ["output"] = "139-output1.png", ["instruction"] = "add a dog" },
                new Dictionary<string, string> { ["input"] = "139-output1.png", ["mask"] = "139-mask2.png", ["output"] = "139-output2.png", ["instruction"] = "give the dog a hat" },
                new Dictionary<string, string> { ["input"] = "139-output2.png", ["mask"] = "139-mask3.png", ["output"] = "139-output3.png", ["instruction"] = "remove the tree" },
            },
        };
        int seed = 0;
        foreach (var (id, files) in new[] { ("30", new[] { "30-input.png", "30-output1.png" }), ("139", new[] { "139-input.png", "139-output1.png", "139-output2.png", "139-output3.png" }) })
        {
            Directory.CreateDirectory(Path.Combine(test, "images", id));
            foreach (var f in files) Pattern(40, 32, seed++).SavePng(Path.Combine(test, "images", id, f));
        }
        File.WriteAllText(Path.Combine(test, "edit_sessions.json"), JsonSerializer.Serialize(sessions));
        File.WriteAllText(Path.Combine(test, "local_descriptions.json"), """
            {"30": {"30-output1.png": "pink sky"}, "139": {"139-output1.png": "a dog", "139-output2.png": "a dog with a hat", "139-output3.png": "no tree"}}
            """);
        File.WriteAllText(Path.Combine(test, "global_descriptions.json"), """
            {"30": {"30-input.png": "a field", "30-output1.png": "a field under a pink sky"}, "139": {"139-output1.png": "a park with a dog"}}
            """);
        return root;
    }

    /// <summary>Two method folders: ELECT runs (reports naming seed 2; one output missing, one corrupt) and plain seed-7 outputs without reports.</summary>
    private (string Elect, string Plain) MakeOutputs()
    {
        var elect = Path.Combine(_dir, "elect");
        var plain = Path.Combine(_dir, "plain");
        Directory.CreateDirectory(elect);
        Directory.CreateDirectory(plain);
        for (int i = 0; i < Keys.Length; i++)
        {
            var key = Keys[i];
            JsonFiles.Write(Path.Combine(elect, $"{key}_report.json"), new Elect.Runner.EditReport
            {
                Input = key, Mode = "elect", BestSeed = 2,
                Candidates = [new Elect.Runner.CandidateReport { Seed = 1, Bis = 0.5 }, new Elect.Runner.CandidateReport { Seed = 2, Bis = 0.1 }],
            });
            Pattern(64, 48, 100 + i).SavePng(Path.Combine(elect, EditOutputs.OutputFile(key, 1)));   // the loser: not evaluated
            if (key == "139_inde_3") File.WriteAllText(Path.Combine(elect, EditOutputs.OutputFile(key, 2)), "not a png");
            else if (key != "139_inde_2") Pattern(64, 48, 200 + i).SavePng(Path.Combine(elect, EditOutputs.OutputFile(key, 2)));
            Pattern(56, 56, 300 + i).SavePng(Path.Combine(plain, EditOutputs.OutputFile(key, 7)));
        }
        return (elect, plain);
    }

    private static double Cell(string[] row, int i) => double.Parse(row[i], System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public void PublishedTestSetIsOneItemPerTurnWithItsGroundTruthAndCaption()
    {
        var root = MakeTestSet();
        var (items, bad, format) = Elect.Datasets.EditDataset.Load(root);
        Assert.Equal(Elect.Datasets.EditDataset.MagicBrushSessionsFormat, format);
        Assert.Empty(bad);
        Assert.Equal(Keys, items.Select(i => i.Key));
        var t2 = items[2];
        Assert.Equal(Path.Combine(root, "test", "images", "139", "139-output1.png"), t2.ImagePath);   // turn 2 edits turn 1's ground truth
        Assert.Equal("give the dog a hat", t2.Instruction);
        Assert.Equal(Path.Combine(root, "test", "images", "139", "139-output2.png"), t2.Target!.ImagePath);
        Assert.Equal("a dog with a hat", t2.Target.Caption);
        var global = Elect.Datasets.EditDataset.Load(Path.Combine(root, "test"), Elect.Datasets.MagicBrushCaptions.Global).Items;
        Assert.Equal("a field under a pink sky", global[0].Target!.Caption);
        Assert.Null(global[2].Target!.Caption);
    }

    [Fact]
    public void PreprocessedJsonReadsElectsKeysAndOptionalGroundTruth()
    {
        var ds = Path.Combine(_dir, "pre");
        Directory.CreateDirectory(ds);
        File.WriteAllText(Path.Combine(ds, "preprocessed.json"), """
            {"a": {"image_path": "imgs/a.png", "editing_instruction": "x", "target_image_path": "gt/a.png", "target_caption": "an a"},
             "b": {"image_path": "/abs/b.png", "editing_instruction": "y"},
             "c": {"image_path": "imgs/c.png", "editing_instruction": "z", "target_image_path": 5}}
            """);
        var (items, bad, format) = Elect.Datasets.EditDataset.Load(ds);
        Assert.Equal(Elect.Datasets.EditDataset.MagicBrushFormat, format);
        Assert.Equal(["a", "b"], items.Select(i => i.Key));
        Assert.Equal(new Elect.Datasets.GroundTruth(Path.Combine(ds, "gt/a.png"), "an a"), items[0].Target);
        Assert.Null(items[1].Target);
        Assert.Contains("target_image_path must be a string", Assert.Single(bad).Error);
    }

    [Fact]
    public void EvaluateGivesPerItemCsvSummaryAndSkipLinesAndPicksTheReportsWinnerOrTheSeed()
    {
        var root = MakeTestSet();
        var (elect, plain) = MakeOutputs();
        var csv = Path.Combine(_dir, "res", "evaluation_result.csv");
        var (code, stdout, stderr) = CliHarness.Run("evaluate", "--dataset-dir", root, "--outputs", elect, plain, "--seed", "7",
            "--metrics", "l1", "l2", "clip-i", "dino", "--clip-path", Repo.Data("magicbrush", "clip-b32"), "--dino-path", Repo.Data("magicbrush", "dino-s16"),
            "--result", csv, "--log-level", "warning");
        Assert.True(code == 0, stderr);
        var lines = File.ReadAllLines(csv);
        Assert.Equal("file_id,elect|l1,elect|l2,elect|clip-i,elect|dino,plain|l1,plain|l2,plain|clip-i,plain|dino", lines[0]);
        Assert.Equal(5, lines.Length);
        var gt = RgbImage.Load(Path.Combine(root, "test", "images", "30", "30-output1.png"));
        var row = lines[1].Split(',');
        Assert.Equal("30_1", row[0]);
        // the report's winner (seed 2), not the loser (seed 1) nor --seed 7 (which is for the plain folder)
        Assert.Equal(MagicBrushMetrics.L1(RgbImage.Load(Path.Combine(elect, EditOutputs.OutputFile("30_1", 2))), gt), Cell(row, 1), 1e-12);
        Assert.Equal(MagicBrushMetrics.L2(RgbImage.Load(Path.Combine(elect, EditOutputs.OutputFile("30_1", 2))), gt), Cell(row, 2), 1e-12);
        Assert.Equal(MagicBrushMetrics.L1(RgbImage.Load(Path.Combine(plain, EditOutputs.OutputFile("30_1", 7))), gt), Cell(row, 5), 1e-12);
        Assert.InRange(Cell(row, 3), -1, 1);
        Assert.InRange(Cell(row, 4), -1, 1);
        Assert.StartsWith("139_inde_2,,,,,", lines[3]);
        Assert.Contains("skip 139_inde_2 (elect): output", stderr);
        Assert.Contains("is missing", stderr);
        Assert.Contains("skip 139_inde_3 (elect): output", stderr);
        Assert.Contains("unreadable", stderr);
        Assert.DoesNotContain("(plain)", stderr);
        Assert.Contains("| method (all_turn) | items | l1 | l2 | clip-i | dino |", stdout);
        Assert.Contains("| elect | 2 (2 skipped) |", stdout);
        Assert.Matches(@"\| plain \| 4 \| 0\.\d{4} \| 0\.\d{4} \|", stdout);
        var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(_dir, "res", Elect.Runner.DatasetEvaluation.SummaryFile))).RootElement;
        Assert.Equal("magicbrush", summary.GetProperty("benchmark").GetString());
        Assert.Equal("all_turn", summary.GetProperty("setting").GetString());
        Assert.Equal(2, summary.GetProperty("skips").GetArrayLength());
        var l1 = summary.GetProperty("methods")[1].GetProperty("metrics")[0];
        Assert.Equal(4, l1.GetProperty("count").GetInt32());
        var html = File.ReadAllText(Path.Combine(_dir, "res", "gallery.html"));
        Assert.Contains("<th>ground truth</th>", html);
        Assert.Contains("src=\"../magicbrush/test/images/30/30-output1.png\"", html);
        Assert.Contains("src=\"../elect/30_1_output_2.png\"", html);

        // without --seed the plain folder has nothing to choose from: every item is skipped with a line, the run goes on
        var (code2, _, stderr2) = CliHarness.Run("evaluate", "--dataset-dir", root, "--outputs", plain, "--metrics", "l1",
            "--result", Path.Combine(_dir, "r2", "e.csv"), "--no-gallery", "--log-level", "warning");
        Assert.Equal(0, code2);
        Assert.Contains("skip 30_1 (plain): no 30_1_report.json", stderr2);
        Assert.Contains("pass --seed S", stderr2);
    }

    [SkippableFact]
    public void RunDatasetEditsEveryTurnOfThePublishedLayoutAndEvaluateReadsItsWinners()
    {
        Fixtures.Require();
        var root = MakeTestSet();
        var outDir = Path.Combine(_dir, "run");
        var (code, _, err) = CliHarness.Run("run-dataset", "--dataset-dir", root, "--model-path", Fixtures.Ip2pTiny, "--device", "cpu", "--output-dir", outDir,
            "--log-level", "warning", "--resolution", "64", "--inference-steps", "2", "--select-one-seed", "--candidate-seeds", "1", "2",
            "--stopping-step", "1", "--last-step-for-mask-extraction", "1");
        Assert.True(code == 0, err);
        foreach (var key in Keys) Assert.True(File.Exists(Path.Combine(outDir, $"{key}_report.json")), key);
        var csv = Path.Combine(_dir, "e", "e.csv");
        (code, var stdout, err) = CliHarness.Run("evaluate", "--dataset-dir", root, "--outputs", outDir, "--metrics", "l1", "l2", "--result", csv, "--no-gallery", "--log-level", "warning");
        Assert.True(code == 0, err);
        Assert.Contains("| run | 4 |", stdout);
        var report = JsonFiles.FromJsonObject<EditReport>(File.ReadAllText(Path.Combine(outDir, "139_inde_2_report.json")))!;
        var row = File.ReadAllLines(csv).Single(l => l.StartsWith("139_inde_2,", StringComparison.Ordinal)).Split(',');
        var gt = RgbImage.Load(Path.Combine(root, "test", "images", "139", "139-output2.png"));
        Assert.Equal(MagicBrushMetrics.L1(RgbImage.Load(Path.Combine(outDir, EditOutputs.OutputFile("139_inde_2", report.BestSeed!.Value))), gt), Cell(row, 1), 1e-12);
    }

    [Fact]
    public void EvaluateNamesMissingGroundTruthAndModels()
    {
        var (elect, _) = MakeOutputs();
        var ds = Path.Combine(_dir, "pre");
        Directory.CreateDirectory(ds);
        File.WriteAllText(Path.Combine(ds, "preprocessed.json"), """{"30_1": {"image_path": "a.png", "editing_instruction": "x"}}""");
        var (code, _, err) = CliHarness.Run("evaluate", "--dataset-dir", ds, "--outputs", elect, "--metrics", "l1", "--no-gallery");
        Assert.Equal(1, code);
        Assert.StartsWith("elect: error: ", err);
        Assert.Contains("no item has a ground truth (target_image_path", err);

        File.WriteAllText(Path.Combine(ds, "preprocessed.json"), """
            {"30_1": {"image_path": "a.png", "editing_instruction": "x", "target_image_path": "gt/none.png"},
             "139_1": {"image_path": "a.png", "editing_instruction": "x"}}
            """);
        var csv = Path.Combine(_dir, "r", "e.csv");
        (code, var stdout, err) = CliHarness.Run("evaluate", "--dataset-dir", ds, "--outputs", elect, "--metrics", "l1", "--result", csv, "--no-gallery", "--log-level", "warning");
        Assert.Equal(0, code);
        Assert.Contains("skip 30_1 (elect): ground truth", err);
        Assert.Contains("none.png is missing", err);
        Assert.Contains("skip 139_1 (elect): the dataset gives no ground truth", err);
        Assert.Contains("| method (items) | items | l1 |", stdout);

        (code, _, err) = CliHarness.Run("evaluate", "--dataset-dir", ds, "--outputs", elect, "--metrics", "dino", "--dino-path", Path.Combine(_dir, "none"), "--no-gallery");
        Assert.Equal(1, code);
        Assert.StartsWith("elect: error: --dino-path: folder", err);
        (code, _, err) = CliHarness.Run("evaluate", "--dataset-dir", ds, "--outputs", elect, "--metrics", "psnr", "--no-gallery");
        Assert.Equal(1, code);
        Assert.Contains("unknown MagicBrush metric 'psnr'", err);
        (code, _, err) = CliHarness.Run("evaluate", "--dataset-dir", ds, "--outputs", elect, "--metrics", "clip-t", "--clip-path", Repo.Data("magicbrush", "clip-b32"), "--no-gallery");
        Assert.Equal(1, code);
        Assert.Contains("CLIP tokenizer: missing vocab.json", err);
    }
}
