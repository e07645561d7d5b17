using System.CommandLine;
using Elect.Evaluation;
using Elect.Runner;
using Microsoft.Extensions.Logging;

namespace Elect.Cli;

/// <summary><c>elect evaluate</c>: PIE-Bench's metrics over the output folders of dataset runs.</summary>
internal static class EvaluateCommand
{
    public static Command Build(TextWriter stdout, TextWriter stderr)
    {
        var c = new Command("evaluate", "PIE-Bench's evaluation (PSNR, MSE, SSIM, ... on the unedited background) of dataset-run output folders: per-item CSV, summary table, gallery");
        var datasetDir = new Option<string>("--dataset-dir") { Description = "Dataset folder (PIE-Bench mapping_file.json + annotation_images/)", DefaultValueFactory = _ => "./datasets/PIE-bench" };
        var outputs = new Option<string[]>("--outputs") { Description = "Output folders of run-dataset (one method each; repeat or list several)", Required = true, AllowMultipleArgumentsPerToken = true };
        var metrics = new Option<string[]>("--metrics") { Description = $"Metrics (default: {string.Join(" ", DefaultMetrics)}, plus lpips_unedit_part when --lpips-path exists and the CLIP target scores when --clip-path exists; known: {string.Join(" ", PieBenchMetrics.All)})", AllowMultipleArgumentsPerToken = true };
        var seed = new Option<long?>("--seed") { Description = "Seed evaluated where an item's report names no winner (a plain-run folder) or there is no report" };
        var categories = new Option<string[]>("--edit-category") { Description = "Only items with these editing_type_id values (0-9)", AllowMultipleArgumentsPerToken = true };
        var result = new Option<string?>("--result") { Description = "Per-item CSV (default: <first --outputs>/evaluation_result.csv); evaluation_summary.json goes beside it" };
        var gallery = new Option<string?>("--gallery") { Description = "HTML gallery to write (default: gallery.html beside --result)" };
        var noGallery = new Option<bool>("--no-gallery") { Description = "Write no gallery" };
        var lpipsPath = new Option<string>("--lpips-path") { Description = "LPIPS folder: torchvision squeezenet1_1*.pth and lpips' v0.1 squeeze.pth (or .safetensors)", DefaultValueFactory = _ => "checkpoints/lpips-squeeze" };
        var clipPath = new Option<string>("--clip-path") { Description = "CLIP folder for the clip_similarity_* metrics (openai/clip-vit-large-patch14 layout)", DefaultValueFactory = _ => "checkpoints/clip-vit-large-patch14" };
        var dinoPath = new Option<string>("--dino-path") { Description = "DINO ViT-B/8 folder for structure_distance (facebook/dino-vitb8 layout)", DefaultValueFactory = _ => "checkpoints/dino-vitb8" };
        var logLevel = new Option<string>("--log-level") { DefaultValueFactory = _ => "information", Description = "Logging threshold" };
        foreach (var o in new Option[] { datasetDir, outputs, metrics, seed, categories, result, gallery, noGallery, lpipsPath, clipPath, dinoPath, logLevel }) c.Add(o);
        c.SetAction(p => ElectCli.Guard(stderr, p.GetValue(logLevel)!, log =>
        {
            var outs = p.GetValue(outputs)!;
            string[] ms = p.GetValue(metrics) is { Length: > 0 } given ? given
                : [.. Directory.Exists(p.GetValue(dinoPath)!) ? ["structure_distance"] : Array.Empty<string>(),
                   .. Directory.Exists(p.GetValue(lpipsPath)!) ? ["psnr_unedit_part", "lpips_unedit_part", "mse_unedit_part", "ssim_unedit_part"] : DefaultMetrics,
                   .. Directory.Exists(p.GetValue(clipPath)!) ? PieBenchMetrics.ClipMetrics.Skip(1) : []];
            foreach (var m in ms)
            {
                if (!PieBenchMetrics.All.Contains(m)) throw new ArgumentException($"--metrics: unknown metric '{m}' (known: {string.Join(", ", PieBenchMetrics.All)})");
                if (!PieBenchMetrics.PixelOnly.Contains(m) && PieBenchMetrics.Base(m) is not ("lpips" or "structure_distance") && !PieBenchMetrics.ClipMetrics.Contains(m)) throw new ArgumentException($"--metrics: '{m}' needs a model this build does not have yet (available: {string.Join(", ", PieBenchMetrics.PixelOnly)})");
            }
            Elect.Models.Perceptual.LpipsSqueeze? lpips = null;
            if (ms.Any(m => PieBenchMetrics.Base(m) == "lpips"))
            {
                var dir = p.GetValue(lpipsPath)!;
                if (!Directory.Exists(dir)) throw new ArgumentException($"--lpips-path: folder {dir} not found (it holds torchvision's squeezenet1_1*.pth and lpips' weights/v0.1/squeeze.pth)");
                Elect.Modeling.TorchRuntime.Initialize();
                lpips = Elect.Models.Perceptual.LpipsSqueeze.Load(dir);
            }
            using var lpipsScope = lpips;
            ClipScore? clip = null;
            if (ms.Any(PieBenchMetrics.ClipMetrics.Contains))
            {
                var dir = p.GetValue(clipPath)!;
                if (!Directory.Exists(dir)) throw new ArgumentException($"--clip-path: folder {dir} not found (openai/clip-vit-large-patch14: config.json, weights, tokenizer files)");
                clip = ClipScore.Load(dir);
            }
            using var clipScope = clip;
            StructureDistance? dino = null;
            if (ms.Any(m => PieBenchMetrics.Base(m) == "structure_distance"))
            {
                var dir = p.GetValue(dinoPath)!;
                if (!Directory.Exists(dir)) throw new ArgumentException($"--dino-path: folder {dir} not found (facebook/dino-vitb8: config.json and weights)");
                dino = StructureDistance.Load(dir);
            }
            using var dinoScope = dino;
            var csv = p.GetValue(result) ?? Path.Combine(outs[0], "evaluation_result.csv");
            Elect.Modeling.TorchRuntime.Initialize();
            var (items, summary) = DatasetEvaluation.Run(new EvaluationOptions
            {
                DatasetDir = p.GetValue(datasetDir)!,
                Outputs = outs,
                Metrics = ms,
                Seed = p.GetValue(seed),
                EditCategories = p.GetValue(categories) is { Length: > 0 } cs ? cs : null,
                ResultCsv = csv,
                Lpips = lpips,
                Clip = clip,
                StructureDistance = dino,
                OnSkip = line => stderr.WriteLine($"elect: {line}"),
            }, log);
            stdout.Write(DatasetEvaluation.Table(summary));
            if (!p.GetValue(noGallery))
            {
                var html = p.GetValue(gallery) ?? Path.Combine(Path.GetDirectoryName(Path.GetFullPath(csv))!, "gallery.html");
                EvaluationGallery.Write(html, items, summary);
                log.LogInformation("gallery: {Html}", html);
            }
            log.LogInformation("per-item results: {Csv}; summary: {Summary}", csv, Path.Combine(Path.GetDirectoryName(Path.GetFullPath(csv))!, DatasetEvaluation.SummaryFile));
            return 0;
        }));
        return c;
    }

    /// <summary>The reference's default metrics that need no model.</summary>
    public static readonly string[] DefaultMetrics = ["psnr_unedit_part", "mse_unedit_part", "ssim_unedit_part"];
}
