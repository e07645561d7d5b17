using System.Text.Json;
using Xunit;
using Elect.Evaluation;
using Elect.Imaging;
using Elect.Modeling;
using Elect.Runner;
using static TorchSharp.torch;

namespace Elect.Tests;

/// <summary>
/// PIE-Bench's pixel metrics and <c>elect evaluate</c>. Goldens: scripts/goldens/make_metric_goldens.py (torchmetrics'
/// PSNR/MSE/SSIM formulas re-expressed line by line, PnPInversion's mask_decode and masking).
/// </summary>
public sealed class EvaluationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("elect-eval-").FullName;

    public EvaluationTests() => TorchRuntime.Initialize();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static RgbImage FromHwc(Tensor t)
    {
        var bytes = t.contiguous().data<byte>().ToArray();
        return new RgbImage((int)t.shape[1], (int)t.shape[0], bytes);
    }

    [Theory]
    [InlineData("noise")]
    [InlineData("edit")]
    public void PixelMetricsMatchTheReferenceFormulasWithPieBenchMasking(string pair)
    {
        var g = SafeTensors.Load(Path.Combine(AppContext.BaseDirectory, "Data", "metrics", "pixel-metrics.safetensors"));
        var rle = g["rle"].data<int>().ToArray();
        var src = FromHwc(g[$"{pair}.src"]);
        var tgt = FromHwc(g[$"{pair}.tgt"]);
        var mask = RleMask.Decode(rle, src.Height, src.Width, markBorder: true);
        using var s = ImageMetrics.ToUnit(src);
        using var t = ImageMetrics.ToUnit(tgt);
        foreach (var metric in new[] { "psnr", "mse", "ssim" })
            foreach (var part in new[] { "", "_unedit_part", "_edit_part" })
            {
                double expected = g[$"{pair}.{metric}{part}"].item<double>();
                double actual = PieBenchMetrics.Compute(metric + part, s, t, mask);
                Assert.True(Math.Abs(expected - actual) <= 1e-4, $"{pair} {metric}{part}: {actual} vs reference {expected}");
            }
    }

    [Fact]
    public void PixelMetricsMatchHandCheckedValues()
    {
        using var a = ImageMetrics.ToUnit(RgbImage.Solid(32, 32, 51, 51, 51));     // 0.2
        using var b = ImageMetrics.ToUnit(RgbImage.Solid(32, 32, 102, 102, 102));  // 0.4
        Assert.Equal(0.04, ImageMetrics.Mse(a, b), 1e-7);
        Assert.Equal(10 * Math.Log10(25), ImageMetrics.Psnr(a, b), 1e-5);          // 13.9794
        // constant images: sigma = 0, SSIM = (2ab + c1) / (a^2 + b^2 + c1) with c1 = 1e-4
        Assert.Equal((2 * 0.2 * 0.4 + 1e-4) / (0.04 + 0.16 + 1e-4), ImageMetrics.Ssim(a, b), 1e-6);
        Assert.Equal(1.0, ImageMetrics.Ssim(a, a), 1e-9);
        Assert.True(double.IsPositiveInfinity(ImageMetrics.Psnr(a, a)));
        Assert.Equal(ImageMetrics.Gaussian1d(11, 1.5)[1], ImageMetrics.Gaussian1d(11, 1.5)[9], 1e-15);
        Assert.Equal(1.0, ImageMetrics.Gaussian1d(11, 1.5).Sum(), 1e-12);
    }

    [Fact]
    public void BackgroundMetricsIgnoreTheEditedRegionAndTheBorderAndAnAllMaskIsNan()
    {
        var src = RgbImage.Solid(64, 64, 10, 20, 30);
        var tgt = src.Clone();
        for (int y = 10; y < 20; y++) for (int x = 0; x < 64; x++) for (int c = 0; c < 3; c++) tgt.Data[(y * 64 + x) * 3 + c] = 200;
        for (int x = 0; x < 64; x++) tgt.Data[x * 3] = 255;   // first row: the border, part of the mask
        var rle = new[] { 10 * 64, 10 * 64 };
        var mask = RleMask.Decode(rle, 64, 64, markBorder: true);
        using var s = ImageMetrics.ToUnit(src);
        using var t = ImageMetrics.ToUnit(tgt);
        Assert.Equal(0, PieBenchMetrics.Compute("mse_unedit_part", s, t, mask));
        Assert.True(PieBenchMetrics.Compute("mse_edit_part", s, t, mask) > 0);
        Assert.True(PieBenchMetrics.Compute("mse", s, t, mask) > 0);
        var full = RleMask.Decode([0, 64 * 64], 64, 64);
        Assert.True(double.IsNaN(PieBenchMetrics.Compute("psnr_unedit_part", s, t, full)));
        Assert.True(double.IsNaN(PieBenchMetrics.Compute("psnr_unedit_part", s, t, null)));
        Assert.Throws<ArgumentException>(() => PieBenchMetrics.Compute("lpips", s, t, mask));
        Assert.Throws<ArgumentException>(() => PieBenchMetrics.Compute("psnr_unedit_part", s, t, new bool[512, 512]));
    }

    /// <summary>A PIE-Bench-style folder (512x512 images, RLE masks) and two method folders.</summary>
    private (string Dataset, string Elect, string Plain) MakeRun()
    {
        var dataset = Path.Combine(_dir, "pie");
        Directory.CreateDirectory(Path.Combine(dataset, "annotation_images", "0_random"));
        var map = new Dictionary<string, object>();
        string[] keys = ["000", "001", "002", "003"];
        for (int i = 0; i < keys.Length; i++)
        {
            var img = SampleImage.Create(512, 512);
            img.SavePng(Path.Combine(dataset, "annotation_images", "0_random", $"{keys[i]}.png"));
            map[keys[i]] = new Dictionary<string, object>
            {
                ["image_path"] = $"0_random/{keys[i]}.png",
                ["editing_instruction"] = "make it [red]",
                ["original_prompt"] = "a [house]",
                ["editing_prompt"] = "a [red] house",
                ["editing_type_id"] = i == 3 ? "1" : "0",
                ["mask"] = new[] { 512 * 100, 512 * 50 },
            };
        }
        File.WriteAllText(Path.Combine(dataset, "mapping_file.json"), JsonSerializer.Serialize(map));
        var elect = Path.Combine(_dir, "elect");
        var plain = Path.Combine(_dir, "plain");
        Directory.CreateDirectory(elect);
        Directory.CreateDirectory(plain);
        foreach (var key in keys)
        {
            var edited = SampleImage.Create(512, 512);
            for (int y = 100; y < 150; y++) for (int x = 0; x < 512; x++) edited.Data[(y * 512 + x) * 3] = 250;   // inside the mask
            var plainEdit = edited.Clone();
            for (int x = 0; x < 512 * 3 * 20; x++) plainEdit.Data[512 * 3 * 300 + x] ^= 0x40;                   // background damage
            JsonFiles.Write(Path.Combine(elect, $"{key}_report.json"), new EditReport
            {
                Input = key, Mode = "elect", BestSeed = 2, Nfe = key == "000" ? 46 : 40, NfeBestOfN = 100,
                Candidates = [new CandidateReport { Seed = 1, Bis = 0.5 }, new CandidateReport { Seed = 2, Bis = 0.1 }],
            });
            if (key != "001") edited.SavePng(Path.Combine(elect, EditOutputs.OutputFile(key, 2)));   // 001: missing
            if (key == "000")
            {
                plainEdit.SavePng(Path.Combine(elect, EditOutputs.OutputFile(key, 1)));                  // --visualize-all-seeds
                RgbImage.Solid(512, 512, 90, 90, 90).ToGray().SavePng(Path.Combine(elect, EditOutputs.MaskFile(key)));
            }
            if (key == "002") File.WriteAllText(Path.Combine(plain, EditOutputs.OutputFile(key, 1)), "not a png");
            else plainEdit.SavePng(Path.Combine(plain, EditOutputs.OutputFile(key, 1)));
        }
        return (dataset, elect, plain);
    }

    [Fact]
    public void EvaluateWritesPerItemCsvAndSummaryAndSkipsBadOutputsWithALine()
    {
        var (dataset, elect, plain) = MakeRun();
        var csv = Path.Combine(_dir, "res", "evaluation_result.csv");
        var (code, stdout, stderr) = CliHarness.Run("evaluate", "--dataset-dir", dataset, "--outputs", elect, plain,
            "--seed", "1", "--edit-category", "0", "--result", csv, "--log-level", "warning");
        Assert.True(code == 0, stderr);
        var lines = File.ReadAllLines(csv);
        Assert.Equal("file_id,elect|psnr_unedit_part,elect|mse_unedit_part,elect|ssim_unedit_part,plain|psnr_unedit_part,plain|mse_unedit_part,plain|ssim_unedit_part", lines[0]);
        Assert.Equal(4, lines.Length);   // 003 is category 1
        var row0 = lines[1].Split(',');
        Assert.Equal("000", row0[0]);
        Assert.Equal("inf", row0[1]);    // ELECT's background is untouched
        Assert.Equal("0", row0[2]);
        Assert.True(double.Parse(row0[5], System.Globalization.CultureInfo.InvariantCulture) > 0);
        Assert.Equal("001,,,", string.Join(',', lines[2].Split(',').Take(4)));
        Assert.Contains("skip 001 (elect): output", stderr);
        Assert.Contains("is missing", stderr);
        Assert.Contains("skip 002 (plain): output", stderr);
        Assert.Contains("unreadable", stderr);
        Assert.Contains("| method | items | psnr_unedit_part | mse_unedit_part x10^4 | ssim_unedit_part x10^2 | NFE/item |", stdout);
        // the model evaluations each method spent, from the evaluated items' reports (000: 46, 002: 40; 001 skipped);
        // the plain folder has no reports
        Assert.Contains("| elect | 2 (1 skipped) | inf | 0.00 | 100.00 | 43 |", stdout);
        Assert.Matches(@"\| plain \| 2 \(1 skipped\) \|.* \| - \|\n", stdout);
        Assert.Equal(DatasetEvaluation.Table(DatasetEvaluation.FromJson(File.ReadAllText(Path.Combine(_dir, "res", DatasetEvaluation.SummaryFile)))),
            File.ReadAllText(Path.Combine(_dir, "res", DatasetEvaluation.SummaryMarkdownFile)));
        var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(_dir, "res", DatasetEvaluation.SummaryFile))).RootElement;
        Assert.Equal(3, summary.GetProperty("items").GetInt32());
        Assert.Equal(2, summary.GetProperty("skips").GetArrayLength());
        Assert.Equal(86, summary.GetProperty("methods")[0].GetProperty("nfe").GetInt64());
        Assert.Equal(200, summary.GetProperty("methods")[0].GetProperty("nfe_best_of_n").GetInt64());
        Assert.Equal(JsonValueKind.Null, summary.GetProperty("methods")[1].GetProperty("nfe").ValueKind);
        var plainMse = summary.GetProperty("methods")[1].GetProperty("metrics")[1];
        Assert.Equal(2, plainMse.GetProperty("count").GetInt32());

        // the gallery: relative links to every image, ground-truth masks beside it, candidates with their BIS
        var html = File.ReadAllText(Path.Combine(_dir, "res", "gallery.html"));
        Assert.Contains("src=\"../pie/annotation_images/0_random/000.png\"", html);
        Assert.Contains("src=\"../elect/000_output_2.png\"", html);
        Assert.Contains("src=\"../elect/000_output-mask.png\"", html);
        Assert.Contains("seed 1 BIS 0.5000", html);
        Assert.Contains("skipped: output", html);
        Assert.DoesNotContain("file:", html);
        foreach (var key in new[] { "000", "001", "002" })
            Assert.True(File.Exists(Path.Combine(_dir, "res", EvaluationGallery.MaskFolder, $"{key}_gt-mask.png")));
        if (Environment.GetEnvironmentVariable("ELECT_KEEP_GALLERY") is { Length: > 0 } keep)
            CopyTree(_dir, keep);
        // headless Chromium loads the page from disk and every image in it decodes
        var chromium = new[] { "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome" }.FirstOrDefault(File.Exists);
        if (chromium is null) return;
        var dom = RunChromium(chromium, "--dump-dom", new Uri(Path.Combine(_dir, "res", "gallery.html")).AbsoluteUri);
        Assert.Matches("data-images=\"(1[0-9]|[2-9][0-9])\"", dom);
        Assert.Contains("data-broken=\"0\"", dom);
    }

    private static string RunChromium(string exe, params string[] args)
    {
        var psi = new System.Diagnostics.ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files", "--virtual-time-budget=10000" }) psi.ArgumentList.Add(a);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = System.Diagnostics.Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEnd();
        Assert.True(p.WaitForExit(60_000), "chromium did not finish in 60 s");
        Assert.True(p.ExitCode == 0, $"chromium exited {p.ExitCode}: {err.Result}");
        return output;
    }

    private static void CopyTree(string from, string to)
    {
        foreach (var d in Directory.GetDirectories(from, "*", SearchOption.AllDirectories))
            Directory.CreateDirectory(Path.Combine(to, Path.GetRelativePath(from, d)));
        foreach (var f in Directory.GetFiles(from, "*", SearchOption.AllDirectories))
            File.Copy(f, Path.Combine(to, Path.GetRelativePath(from, f)), overwrite: true);
    }

    [Fact]
    public void EvaluateComputesLpipsFromTheLpipsFolderAndNamesAMissingOne()
    {
        var (dataset, elect, plain) = MakeRun();
        var lpipsDir = Path.Combine(AppContext.BaseDirectory, "Data", "metrics", "lpips-squeeze");
        var csv = Path.Combine(_dir, "l.csv");
        var (code, stdout, stderr) = CliHarness.Run("evaluate", "--dataset-dir", dataset, "--outputs", elect, plain, "--seed", "1",
            "--metrics", "lpips_unedit_part", "--lpips-path", lpipsDir, "--result", csv, "--no-gallery", "--log-level", "warning");
        Assert.True(code == 0, stderr);
        Assert.Contains("lpips_unedit_part x10^3", stdout);
        var row = File.ReadAllLines(csv)[1].Split(',');
        Assert.Equal("000", row[0]);
        Assert.Equal(0, double.Parse(row[1], System.Globalization.CultureInfo.InvariantCulture), 1e-9);
        Assert.True(double.Parse(row[2], System.Globalization.CultureInfo.InvariantCulture) > 0);
        var dino = CliHarness.Run("evaluate", "--dataset-dir", dataset, "--outputs", elect, plain, "--seed", "1", "--metrics", "structure_distance_unedit_part",
            "--dino-path", Path.Combine(AppContext.BaseDirectory, "Data", "dino-tiny"), "--result", csv, "--no-gallery", "--log-level", "warning");
        Assert.True(dino.Code == 0, dino.Err);
        Assert.Contains("structure_distance_unedit_part x10^3", dino.Out);
        var drow = File.ReadAllLines(csv)[1].Split(',');
        Assert.Equal(0, double.Parse(drow[1], System.Globalization.CultureInfo.InvariantCulture), 1e-12);
        Assert.True(double.Parse(drow[2], System.Globalization.CultureInfo.InvariantCulture) > 0);
        var missing = CliHarness.Run("evaluate", "--dataset-dir", dataset, "--outputs", elect, "--metrics", "lpips", "--lpips-path", Path.Combine(_dir, "none"));
        Assert.Equal(1, missing.Code);
        Assert.StartsWith("elect: error: --lpips-path: folder", missing.Err);
    }

    [SkippableFact]
    public void EvaluateComputesClipScoresOfTheTargetWholeAndEditedPart()
    {
        var fixtures = Fixtures.Require();   // the CLIP tokenizer files
        var (dataset, elect, _) = MakeRun();
        var clipDir = Path.Combine(_dir, "clip");
        Directory.CreateDirectory(clipDir);
        foreach (var f in Directory.GetFiles(Path.Combine(AppContext.BaseDirectory, "Data", "clip-tiny")))
            File.Copy(f, Path.Combine(clipDir, Path.GetFileName(f)));
        foreach (var f in Directory.GetFiles(Path.Combine(fixtures, "models", "ip2p-tiny", "tokenizer")))
            File.Copy(f, Path.Combine(clipDir, Path.GetFileName(f)));
        var csv = Path.Combine(_dir, "c.csv");
        var (code, _, stderr) = CliHarness.Run("evaluate", "--dataset-dir", dataset, "--outputs", elect, "--metrics",
            "clip_similarity_target_image", "clip_similarity_target_image_edit_part", "--clip-path", clipDir, "--result", csv, "--no-gallery", "--log-level", "warning");
        Assert.True(code == 0, stderr);
        var row = File.ReadAllLines(csv)[1].Split(',');
        using var clip = ClipScore.Load(clipDir);
        var target = RgbImage.Load(Path.Combine(elect, EditOutputs.OutputFile("000", 2)));
        var mask = PieBenchMetrics.Mask([512 * 100, 512 * 50]);
        Assert.Equal(clip.Score(target, "a red house"), double.Parse(row[1], System.Globalization.CultureInfo.InvariantCulture), 1e-9);
        Assert.Equal(clip.Score(target, "a red house", mask), double.Parse(row[2], System.Globalization.CultureInfo.InvariantCulture), 1e-9);
    }

    [Fact]
    public void EvaluateWithoutSeedSkipsAPlainFolderWithoutReportsAndRejectsUnknownMetrics()
    {
        var (dataset, _, plain) = MakeRun();
        var (code, _, stderr) = CliHarness.Run("evaluate", "--dataset-dir", dataset, "--outputs", plain, "--log-level", "warning");
        Assert.Equal(0, code);
        Assert.Contains("pass --seed S", stderr);
        Assert.True(File.Exists(Path.Combine(plain, "evaluation_result.csv")));
        var bad = CliHarness.Run("evaluate", "--dataset-dir", dataset, "--outputs", plain, "--metrics", "psnr", "fid");
        Assert.Equal(1, bad.Code);
        Assert.StartsWith("elect: error: --metrics: unknown metric 'fid'", bad.Err);
        var missing = CliHarness.Run("evaluate", "--dataset-dir", dataset, "--outputs", Path.Combine(_dir, "nope"));
        Assert.Equal(1, missing.Code);
        Assert.Contains("output folder not found", missing.Err);
    }
}

/// <summary>LPIPS SqueezeNet against scripts/goldens/make_lpips_goldens.py (torchvision's squeezenet1_1, lpips' formula).</summary>
public sealed class LpipsTests
{
    private static readonly string Dir = Path.Combine(AppContext.BaseDirectory, "Data", "metrics", "lpips-squeeze");

    public LpipsTests() => TorchRuntime.Initialize();

    [Fact]
    public void LpipsSqueezeMatchesTheReferenceOnWholeAndMaskedImages()
    {
        var g = SafeTensors.Load(Path.Combine(Dir, "golden.safetensors"));
        using var lpips = Elect.Models.Perceptual.LpipsSqueeze.Load(Dir);
        var src = g["src"].contiguous().data<byte>().ToArray();
        var tgt = g["tgt"].contiguous().data<byte>().ToArray();
        using var s = ImageMetrics.ToUnit(new RgbImage(64, 64, src));
        using var t = ImageMetrics.ToUnit(new RgbImage(64, 64, tgt));
        var m = g["mask"].data<float>().ToArray();
        var mask = new bool[64, 64];
        for (int y = 0; y < 64; y++) for (int x = 0; x < 64; x++) mask[y, x] = m[y * 64 + x] > 0;
        double whole = PieBenchMetrics.Compute("lpips", s, t, mask, lpips: lpips);
        double unedit = PieBenchMetrics.Compute("lpips_unedit_part", s, t, mask, lpips: lpips);
        Assert.True(Math.Abs(whole - g["lpips.whole"].item<double>()) <= 1e-6, $"whole {whole} vs {g["lpips.whole"].item<double>()}");
        Assert.True(Math.Abs(unedit - g["lpips.unedit"].item<double>()) <= 1e-6, $"unedit {unedit} vs {g["lpips.unedit"].item<double>()}");
        Assert.Equal(0, lpips.Score(s, s), 1e-9);
    }

    [Fact]
    public void MissingOrMisshapenLpipsWeightsAreNamed()
    {
        var tmp = Directory.CreateTempSubdirectory("elect-lpips-").FullName;
        try
        {
            Assert.Contains("no squeezenet1_1", Assert.Throws<FileNotFoundException>(() => Elect.Models.Perceptual.LpipsSqueeze.Load(tmp)).Message);
            File.Copy(Path.Combine(Dir, "squeezenet1_1.pth"), Path.Combine(tmp, "squeezenet1_1-b8a52dc0.pth"));
            Assert.Contains("no squeeze.pth", Assert.Throws<FileNotFoundException>(() => Elect.Models.Perceptual.LpipsSqueeze.Load(tmp)).Message);
            SafeTensors.Save(Path.Combine(tmp, "squeeze.safetensors"), new Dictionary<string, TorchSharp.torch.Tensor> { ["lin0.model.1.weight"] = TorchSharp.torch.zeros(1, 32, 1, 1) });
            var e = Assert.Throws<InvalidDataException>(() => Elect.Models.Perceptual.LpipsSqueeze.Load(tmp));
            Assert.Contains("'lin0.model.1.weight' has shape [1, 32, 1, 1]", e.Message);
        }
        finally { Directory.Delete(tmp, recursive: true); }
    }
}

/// <summary>CLIP vision tower against transformers' CLIPModel (scripts/goldens/make_clip_vision_goldens.py).</summary>
public sealed class ClipVisionTests
{
    [Fact]
    public void ClipVisionTowerMatchesTransformersFromACLIPModelFolder()
    {
        TorchRuntime.Initialize();
        var data = Path.Combine(AppContext.BaseDirectory, "Data");
        var g = SafeTensors.Load(Path.Combine(data, "clip-tiny-golden.safetensors"));
        using var model = Elect.Models.Vision.ClipVisionModel.FromPretrained(Path.Combine(data, "clip-tiny"));
        Assert.Equal(24, model.Config.ProjectionDim);
        using var _ = no_grad();
        using var o = model.forward(g["pixel_values"]);
        foreach (var (name, t) in new[] { ("last_hidden_state", o.LastHiddenState), ("penultimate", o.PenultimateHiddenState), ("pooled", o.PooledOutput), ("image_embeds", o.ImageEmbeds) })
        {
            double diff = (t - g[name]).abs().max().item<float>();
            Assert.True(diff <= 1e-4, $"{name}: max |diff| {diff}");
        }
    }

    [SkippableFact]
    public void ClipScoreMatchesTorchmetricsFormulaWithTransformersPreprocessing()
    {
        var fixtures = Fixtures.Require();   // the CLIP tokenizer of the shared fixtures (real CLIP BPE vocabulary)
        var data = Path.Combine(AppContext.BaseDirectory, "Data");
        var g = SafeTensors.Load(Path.Combine(data, "clip-tiny-golden.safetensors"));
        using var clip = ClipScore.Load(Path.Combine(data, "clip-tiny"), Path.Combine(fixtures, "models", "ip2p-tiny", "tokenizer"));
        var img = g["score_image"];
        var image = new RgbImage((int)img.shape[1], (int)img.shape[0], img.contiguous().data<byte>().ToArray());
        using var px = clip.Preprocess(image);
        double pxDiff = (px - g["score0.pixel_values"]).abs().max().item<float>();
        Assert.True(pxDiff <= 1e-4, $"pixel values: max |diff| {pxDiff}");
        string[] prompts = ["a red house with a garden", "a photo of a cat"];
        for (int k = 0; k < prompts.Length; k++)
        {
            Assert.Equal(g[$"score{k}.input_ids"].data<long>().ToArray(), clip.TokenIds(prompts[k]));
            double cos = clip.Cosine(image, prompts[k]);
            Assert.True(Math.Abs(cos - g[$"cos{k}"].item<double>()) <= 1e-6, $"cos {k}: {cos} vs {g[$"cos{k}"].item<double>()}");
            Assert.True(Math.Abs(clip.Score(image, prompts[k]) - g[$"score{k}"].item<double>()) <= 1e-4);
        }
    }
}

/// <summary>DINO structure distance against scripts/goldens/make_dino_goldens.py (transformers' ViTModel, PnPInversion's formula).</summary>
public sealed class StructureDistanceTests
{
    [Fact]
    public void StructureDistanceMatchesTheReferenceWithItsQuirks()
    {
        TorchRuntime.Initialize();
        var data = Path.Combine(AppContext.BaseDirectory, "Data");
        var g = SafeTensors.Load(Path.Combine(data, "dino-tiny-golden.safetensors"));
        using var sd = StructureDistance.Load(Path.Combine(data, "dino-tiny"));
        Assert.Equal(2, sd.Layer);
        using var s = ImageMetrics.ToUnit(new RgbImage(64, 64, g["src"].contiguous().data<byte>().ToArray()));
        using var t = ImageMetrics.ToUnit(new RgbImage(64, 64, g["tgt"].contiguous().data<byte>().ToArray()));
        var m = g["mask"].data<float>().ToArray();
        var mask = new bool[64, 64];
        for (int y = 0; y < 64; y++) for (int x = 0; x < 64; x++) mask[y, x] = m[y * 64 + x] > 0;
        foreach (var (metric, key) in new[] { ("structure_distance", "sd.whole"), ("structure_distance_unedit_part", "sd.unedit") })
        {
            double expected = g[key].item<double>();
            double actual = PieBenchMetrics.Compute(metric, s, t, mask, structureDistance: sd);
            Assert.True(Math.Abs(actual - expected) <= 1e-7 + 1e-4 * Math.Abs(expected), $"{metric}: {actual} vs reference {expected}");
        }
        Assert.Equal(0, sd.Score(s, s), 1e-12);
    }
}
