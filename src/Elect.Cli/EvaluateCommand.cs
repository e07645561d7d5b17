using System.CommandLine;
using Elect.Evaluation;
using Elect.Runner;
using Microsoft.Extensions.Logging;

namespace Elect.Cli;

/// <summary><c>elect evaluate</c>: PIE-Bench's or the MagicBrush test set's metrics over the output folders of dataset runs (the benchmark follows the dataset folder).</summary>
internal static class EvaluateCommand
{
    public static Command Build(TextWriter stdout, TextWriter stderr)
    {
        var c = new Command("evaluate", "PIE-Bench's evaluation (PSNR, MSE, SSIM, ... on the unedited background) or the MagicBrush test set's (L1, L2, CLIP-I, DINO, CLIP-T against the ground truth) of dataset-run output folders: per-item CSV, summary table, gallery");
        var datasetDir = new Option<string>("--dataset-dir") { Description = "Dataset folder: PIE-Bench (mapping_file.json + annotation_images/) or MagicBrush (preprocessed.json with target_image_path/target_caption, or the published test set: edit_sessions.json + images/ + *_descriptions.json)", DefaultValueFactory = _ => "./datasets/PIE-bench" };
        var outputs = new Option<string[]>("--outputs") { Description = "Output folders of run-dataset (one method each; repeat or list several)", Required = true, AllowMultipleArgumentsPerToken = true };
        var metrics = new Option<string[]>("--metrics") { Description = $"Metrics. PIE-Bench (default: {string.Join(" ", DefaultMetrics)}, plus lpips_unedit_part when --lpips-path exists, the CLIP target scores when --clip-path exists, structure_distance when --dino-path exists; known: {string.Join(" ", PieBenchMetrics.All)}). MagicBrush (default: l1 l2, plus clip-i clip-t clip-t_oracle when --clip-path exists and dino when --dino-path exists; known: {string.Join(" ", MagicBrushMetrics.All)})", AllowMultipleArgumentsPerToken = true };
        var seed = new Option<long?>("--seed") { Description = "Seed evaluated where an item's report names no winner (a plain-run folder) or there is no report" };
        var categories = new Option<string[]>("--edit-category") { Description = "Only items with these editing_type_id values (0-9)", AllowMultipleArgumentsPerToken = true };
        var result = new Option<string?>("--result") { Description = "Per-item CSV (default: <first --outputs>/evaluation_result.csv); evaluation_summary.json goes beside it" };
        var gallery = new Option<string?>("--gallery") { Description = "HTML gallery to write (default: gallery.html beside --result)" };
        var noGallery = new Option<bool>("--no-gallery") { Description = "Write no gallery" };
        var lpipsPath = new Option<string>("--lpips-path") { Description = "LPIPS folder: torchvision squeezenet1_1*.pth and lpips' v0.1 squeeze.pth (or .safetensors)", DefaultValueFactory = _ => "checkpoints/lpips-squeeze" };
        var clipPath = new Option<string?>("--clip-path") { Description = "CLIP folder: PIE-Bench's clip_similarity_* (openai/clip-vit-large-patch14; default checkpoints/clip-vit-large-patch14), MagicBrush's clip-i/clip-t (openai/clip-vit-base-patch32; default checkpoints/clip-vit-base-patch32)" };
        var dinoPath = new Option<string?>("--dino-path") { Description = "DINO folder: PIE-Bench's structure_distance (facebook/dino-vitb8; default checkpoints/dino-vitb8), MagicBrush's dino (facebook/dino-vits16; default checkpoints/dino-vits16)" };
        var captions = new Option<string>("--captions") { Description = "MagicBrush published test set: the captions CLIP-T compares with, local (local_descriptions.json, as MagicBrush's evaluation README runs it) or global (global_descriptions.json)", DefaultValueFactory = _ => "local" };
        var setting = new Option<string?>("--magicbrush-setting") { Description = "MagicBrush published test set: all-turn (every turn's {id}_1 / {id}_inde_{t} output against its ground truth), final-turn (each session's last iterative output, {id}_iter_{n} or {id}_1, against its last ground truth; files named *_final_turn.*) or both (default: final-turn where the folders hold iterative outputs, all-turn where they hold independent ones, both where both)" };
        var logLevel = new Option<string>("--log-level") { DefaultValueFactory = _ => "information", Description = "Logging threshold" };
        foreach (var o in new Option[] { datasetDir, outputs, metrics, seed, categories, result, gallery, noGallery, lpipsPath, clipPath, dinoPath, captions, setting, logLevel }) c.Add(o);
        c.SetAction(p => ElectCli.Guard(stderr, p.GetValue(logLevel)!, log =>
        {
            var outs = p.GetValue(outputs)!;
            if (DatasetEvaluation.BenchmarkOf(p.GetValue(datasetDir)!) == DatasetEvaluation.MagicBrush)
                return RunMagicBrush(p, log, stdout, stderr, datasetDir, outs, metrics, seed, categories, result, gallery, noGallery, clipPath, dinoPath, captions, setting);
            if (p.GetValue(setting) is { } s) throw new ArgumentException($"--magicbrush-setting {s}: the dataset is not MagicBrush's");
            var clipDirPie = p.GetValue(clipPath) ?? "checkpoints/clip-vit-large-patch14";
            var dinoDirPie = p.GetValue(dinoPath) ?? "checkpoints/dino-vitb8";
            string[] ms = p.GetValue(metrics) is { Length: > 0 } given ? given
                : [.. Directory.Exists(dinoDirPie) ? ["structure_distance"] : Array.Empty<string>(),
                   .. Directory.Exists(p.GetValue(lpipsPath)!) ? ["psnr_unedit_part", "lpips_unedit_part", "mse_unedit_part", "ssim_unedit_part"] : DefaultMetrics,
                   .. Directory.Exists(clipDirPie) ? PieBenchMetrics.ClipMetrics.Skip(1) : []];
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
                var dir = clipDirPie;
                if (!Directory.Exists(dir)) throw new ArgumentException($"--clip-path: folder {dir} not found (openai/clip-vit-large-patch14: config.json, weights, tokenizer files)");
                clip = ClipScore.Load(dir);
            }
            using var clipScope = clip;
            StructureDistance? dino = null;
            if (ms.Any(m => PieBenchMetrics.Base(m) == "structure_distance"))
            {
                var dir = dinoDirPie;
                if (!Directory.Exists(dir)) throw new ArgumentException($"--dino-path: folder {dir} not found (facebook/dino-vitb8: config.json and weights)");
                dino = StructureDistance.Load(dir);
            }
            using var dinoScope = dino;
            var csv = p.GetValue(result) ?? Path.Combine(outs[0], "evaluation_result.csv");
            return RunAndReport(p, gallery, noGallery, log, stdout, new EvaluationOptions
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
            });
        }));
        return c;
    }

    /// <summary>Runs the evaluation, prints the summary table, writes the gallery unless <c>--no-gallery</c>, logs where it all went.</summary>
    private static int RunAndReport(System.CommandLine.ParseResult p, Option<string?> gallery, Option<bool> noGallery, ILogger log, TextWriter stdout,
        EvaluationOptions o)
    {
        var setting = o.MagicBrushSetting;
        Elect.Modeling.TorchRuntime.Initialize();
        var (items, summary) = DatasetEvaluation.Run(o, log);
        stdout.Write(DatasetEvaluation.Table(summary));
        var resultDir = Path.GetDirectoryName(Path.GetFullPath(o.ResultCsv))!;
        if (!p.GetValue(noGallery))
        {
            var html = DatasetEvaluation.SettingFile(p.GetValue(gallery) ?? Path.Combine(resultDir, "gallery.html"), setting);
            EvaluationGallery.Write(html, items, summary);
            log.LogInformation("gallery: {Html}", html);
        }
        log.LogInformation("per-item results: {Csv}; summary: {Summary}", o.ResultCsv, Path.Combine(resultDir, DatasetEvaluation.SettingFile(DatasetEvaluation.SummaryFile, setting)));
        return 0;
    }

    private static int RunMagicBrush(System.CommandLine.ParseResult p, ILogger log, TextWriter stdout, TextWriter stderr, Option<string> datasetDir, string[] outs,
        Option<string[]> metrics, Option<long?> seed, Option<string[]> categories, Option<string?> result, Option<string?> gallery, Option<bool> noGallery,
        Option<string?> clipPath, Option<string?> dinoPath, Option<string> captions, Option<string?> settingOpt)
    {
        var datasetFolder = p.GetValue(datasetDir)!;
        IReadOnlyList<MagicBrushSetting> settings = p.GetValue(settingOpt) switch
        {
            null => DatasetEvaluation.DefaultMagicBrushSettings(datasetFolder, outs),
            "all-turn" => [MagicBrushSetting.AllTurn],
            "final-turn" => [MagicBrushSetting.FinalTurn],
            "both" => [MagicBrushSetting.FinalTurn, MagicBrushSetting.AllTurn],
            var other => throw new ArgumentException($"--magicbrush-setting: '{other}' is not all-turn, final-turn or both"),
        };
        if (p.GetValue(settingOpt) is not null && Elect.Datasets.EditDataset.Load(datasetFolder).Format != Elect.Datasets.EditDataset.MagicBrushSessionsFormat)
            throw new ArgumentException($"--magicbrush-setting needs the published MagicBrush test set (edit_sessions.json and images/); {datasetFolder} is a preprocessed.json dataset");
        if (p.GetValue(settingOpt) is null && Elect.Datasets.EditDataset.Load(datasetFolder).Format == Elect.Datasets.EditDataset.MagicBrushSessionsFormat)
            log.LogInformation("MagicBrush setting: {Settings} (from the outputs in the folders; --magicbrush-setting chooses)",
                string.Join(" and ", settings.Select(DatasetEvaluation.SettingName)));
        var clipDir = p.GetValue(clipPath) ?? "checkpoints/clip-vit-base-patch32";
        var dinoDir = p.GetValue(dinoPath) ?? "checkpoints/dino-vits16";
        var which = p.GetValue(captions) switch
        {
            "local" => Elect.Datasets.MagicBrushCaptions.Local,
            "global" => Elect.Datasets.MagicBrushCaptions.Global,
            var other => throw new ArgumentException($"--captions: '{other}' is not local or global"),
        };
        string[] ms = p.GetValue(metrics) is { Length: > 0 } given ? given
            : MagicBrushMetrics.All.Where(m => MagicBrushMetrics.PixelOnly.Contains(m)
                                              || (MagicBrushMetrics.ClipMetrics.Contains(m) && Directory.Exists(clipDir))
                                              || (m == "dino" && Directory.Exists(dinoDir))).ToArray();
        foreach (var m in ms)
            if (!MagicBrushMetrics.All.Contains(m)) throw new ArgumentException($"--metrics: unknown MagicBrush metric '{m}' (known: {string.Join(", ", MagicBrushMetrics.All)})");
        if (p.GetValue(categories) is { Length: > 0 }) throw new ArgumentException("--edit-category selects PIE-Bench editing types; a MagicBrush dataset has none");
        MagicBrushClip? clip = null;
        MagicBrushDino? dino = null;
        try
        {
            if (ms.Any(MagicBrushMetrics.ClipMetrics.Contains))
            {
                if (!Directory.Exists(clipDir)) throw new ArgumentException($"--clip-path: folder {clipDir} not found (openai/clip-vit-base-patch32: config.json, weights, tokenizer files)");
                clip = MagicBrushClip.Load(clipDir);
                if (ms.Any(MagicBrushMetrics.CaptionMetrics.Contains)) clip.RequireTokenizer();
            }
            if (ms.Contains("dino"))
            {
                if (!Directory.Exists(dinoDir)) throw new ArgumentException($"--dino-path: folder {dinoDir} not found (facebook/dino-vits16: config.json and weights)");
                dino = MagicBrushDino.Load(dinoDir);
            }
            var csv = p.GetValue(result) ?? Path.Combine(outs[0], "evaluation_result.csv");
            foreach (var s in settings)
                RunAndReport(p, gallery, noGallery, log, stdout, new EvaluationOptions
                {
                    DatasetDir = datasetFolder,
                    Outputs = outs,
                    Metrics = ms,
                    Seed = p.GetValue(seed),
                    ResultCsv = DatasetEvaluation.SettingFile(csv, s),
                    MagicBrushClip = clip,
                    MagicBrushDino = dino,
                    Captions = which,
                    MagicBrushSetting = s,
                    OnSkip = line => stderr.WriteLine($"elect: {line}"),
                });
            return 0;
        }
        finally
        {
            clip?.Dispose();
            dino?.Dispose();
        }
    }

    /// <summary>The reference's default metrics that need no model.</summary>
    public static readonly string[] DefaultMetrics = ["psnr_unedit_part", "mse_unedit_part", "ssim_unedit_part"];
}
