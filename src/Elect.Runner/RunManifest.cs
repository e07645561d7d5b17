using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Elect.Selection;
using System.Text.Json.Serialization;
using static TorchSharp.torch;

namespace Elect.Runner;

/// <summary>
/// <c>run_manifest.json</c> in a dataset run's output folder: the settings that determine the outputs
/// (model, checkpoint identity, dtype, resolution, steps, guidance, seeds, ELECT's stopping and mask
/// steps). A resume whose settings differ is refused with the differences named, so old and new
/// results are never mixed silently. The checkpoint's path is recorded but not compared (a moved
/// checkpoint is the same checkpoint); its identity is a hash over the names and sizes of its files,
/// the full content of its JSON configs and the first and last 64 KiB of every other file.
/// </summary>
/// <remarks>The keys of the file are the snake_case names of the properties.</remarks>
public sealed record RunManifest
{
    public const string FileName = "run_manifest.json";

    /// <summary>The manifest's format version.</summary>
    public int Format { get; init; } = 1;

    /// <summary>The model family.</summary>
    public string Model { get; init; } = "";

    /// <summary>The checkpoint's full path (informational: a moved checkpoint is the same checkpoint).</summary>
    public string Checkpoint { get; init; } = "";

    /// <summary><see cref="CheckpointIdentity"/> of the checkpoint.</summary>
    public string CheckpointId { get; init; } = "";

    public string Dtype { get; init; } = "";
    public int Resolution { get; init; }
    public int InferenceSteps { get; init; }
    public float TextCfgScale { get; init; }
    public float ImageCfgScale { get; init; }

    /// <summary><c>plain</c> or <c>elect</c>.</summary>
    public string Mode { get; init; } = "";

    public IReadOnlyList<long> Seeds { get; init; } = [];
    public int RandomCandidates { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? StoppingStep { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? FirstStepForMaskExtraction { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? LastStepForMaskExtraction { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public bool? VisualizeAllSeeds { get; init; }

    /// <summary>The selection options beyond the paper (pruning, adaptive stopping, known masks) with their parameters; absent without them.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Strategy { get; init; }

    public string CreatedUtc { get; init; } = "";

    /// <summary>The settings of earlier runs that were mixed into the folder with <c>--force</c>, oldest first.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<RunManifest>? Previous { get; init; }

    /// <summary>The compared settings as (file key, text) in file order: everything but format, checkpoint, created_utc and previous.</summary>
    private IEnumerable<(string Key, string? Text)> Compared()
    {
        static string N(long v) => v.ToString(CultureInfo.InvariantCulture);
        static string F(float v) => v.ToString(CultureInfo.InvariantCulture);
        yield return ("model", Model);
        yield return ("checkpoint_id", CheckpointId);
        yield return ("dtype", Dtype);
        yield return ("resolution", N(Resolution));
        yield return ("inference_steps", N(InferenceSteps));
        yield return ("text_cfg_scale", F(TextCfgScale));
        yield return ("image_cfg_scale", F(ImageCfgScale));
        yield return ("mode", Mode);
        yield return ("seeds", string.Join(" ", Seeds.Select(N)));
        yield return ("random_candidates", N(RandomCandidates));
        yield return ("stopping_step", StoppingStep is { } s ? N(s) : null);
        yield return ("first_step_for_mask_extraction", FirstStepForMaskExtraction is { } f ? N(f) : null);
        yield return ("last_step_for_mask_extraction", LastStepForMaskExtraction is { } l ? N(l) : null);
        yield return ("visualize_all_seeds", VisualizeAllSeeds is { } v ? (v ? "true" : "false") : null);
        yield return ("strategy", Strategy);
    }

    public static RunManifest Create(string family, string checkpointFolder, ScalarType dtype, int resolution, EditOptions edit,
                                     float textGuidance, SelectionOptions? selection, IReadOnlyList<long> seeds, int randomCandidates,
                                     bool datasetMask = false) => new()
    {
        Model = family,
        Checkpoint = Path.GetFullPath(checkpointFolder),
        CheckpointId = CheckpointIdentity(checkpointFolder),
        Dtype = dtype.ToString(),
        Resolution = resolution,
        InferenceSteps = edit.InferenceSteps,
        TextCfgScale = textGuidance,
        ImageCfgScale = edit.ImageGuidance,
        Mode = selection is null ? "plain" : "elect",
        Seeds = seeds.ToArray(),
        RandomCandidates = randomCandidates,
        StoppingStep = selection?.StoppingStep,
        FirstStepForMaskExtraction = selection?.FirstMaskStep,
        LastStepForMaskExtraction = selection?.LastMaskStep,
        VisualizeAllSeeds = selection?.KeepAllSeeds,
        Strategy = StrategyOf(selection, datasetMask),
        CreatedUtc = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
    };

    /// <summary><c>prune-at 20,30 keep 3; auto-stop interval 2 patience 3 margin 0.02 max 30; dataset-mask</c>; null for the paper's algorithm.</summary>
    public static string? StrategyOf(SelectionOptions? s, bool datasetMask)
    {
        if (s is null) return null;
        var parts = new List<string>();
        static string I(double v) => v.ToString(CultureInfo.InvariantCulture);
        if (s.PruneAt is { Count: > 0 } p) parts.Add($"prune-at {string.Join(",", p)}" + (s.Keep is { } k ? $" keep {k}" : ""));
        if (s.AutoStop)
            parts.Add($"auto-stop interval {s.AutoStopInterval} patience {s.AutoStopPatience} margin {I(s.AutoStopMargin)} max {(s.AutoStopMaxStep is { } m ? I(m) : "default")}");
        if (datasetMask) parts.Add("dataset-mask");
        else if (s.KnownMask is not null) parts.Add("known-mask");
        return parts.Count == 0 ? null : string.Join("; ", parts);
    }

    /// <summary>The manifest in <paramref name="outputDir"/>, or null when there is none.</summary>
    /// <exception cref="InvalidDataException">it exists but is not a JSON object of a manifest's shape.</exception>
    public static RunManifest? Read(string outputDir)
    {
        var path = Path.Combine(outputDir, FileName);
        if (!File.Exists(path)) return null;
        try
        {
            return JsonFiles.FromJsonObject<RunManifest>(File.ReadAllText(path))
                   ?? throw new InvalidDataException($"{path}: not a JSON object (delete it, or use another --output-dir)");
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON ({e.Message}); delete it, or use another --output-dir");
        }
    }

    /// <summary>The seeds an earlier run drew at random, when it drew <paramref name="randomCandidates"/> of them.</summary>
    public static long[]? RandomSeedsOf(RunManifest? existing, int randomCandidates)
    {
        if (existing is null || randomCandidates <= 0) return null;
        if (existing.RandomCandidates != randomCandidates || existing.Seeds.Count != randomCandidates) return null;
        return existing.Seeds.ToArray();
    }

    /// <summary>Human-readable differences in the compared settings: <c>resolution 128 -&gt; 64</c>.</summary>
    public static IReadOnlyList<string> Differences(RunManifest existing, RunManifest current)
    {
        var now = current.Compared().ToDictionary(c => c.Key, c => c.Text);
        var diffs = new List<string>();
        foreach (var (k, before) in existing.Compared())
        {
            string a = before ?? "(none)", b = now[k] ?? "(none)";
            if (a != b) diffs.Add($"{k} {a} -> {b}");
        }
        return diffs;
    }

    /// <summary>
    /// Checks <paramref name="current"/> against the manifest already in <paramref name="outputDir"/> and writes it:
    /// refuses differing settings, when the folder holds item reports, unless <paramref name="force"/> (then the new manifest records the old ones under
    /// <c>previous</c>). Returns the differences that were forced through (empty normally).
    /// </summary>
    /// <exception cref="InvalidOperationException">the settings differ and <paramref name="force"/> is false.</exception>
    public static IReadOnlyList<string> CheckAndWrite(string outputDir, RunManifest current, bool force)
    {
        var existing = Read(outputDir);
        // a manifest without any item report (a run that stopped before its first item) guards nothing
        if (existing is not null && !Directory.EnumerateFiles(outputDir, "*" + DatasetRunner.ItemReportFile("")).Any())
            existing = null;
        IReadOnlyList<string> diffs = existing is null ? [] : Differences(existing, current);
        if (diffs.Count > 0 && !force)
            throw new InvalidOperationException(
                $"{Path.Combine(outputDir, FileName)}: this output folder holds results of other settings ({string.Join("; ", diffs)}); " +
                "use another --output-dir, or --force to mix them deliberately");
        if (existing is not null && diffs.Count == 0) return diffs;   // same settings: keep the original manifest
        if (existing is not null)
            current = current with { Previous = [.. existing.Previous ?? [], existing with { Previous = null }] };
        JsonFiles.Write(Path.Combine(outputDir, FileName), current);
        return diffs;
    }

    /// <summary>
    /// A short hash identifying a checkpoint's content without reading all of its weights: a folder's files, or a
    /// single-file checkpoint with its same-named <c>.yaml</c> config when there is one (InstructDiffusion).
    /// </summary>
    public static string CheckpointIdentity(string checkpoint)
    {
        string root;
        IEnumerable<string> files;
        if (Directory.Exists(checkpoint))
        {
            root = Path.GetFullPath(checkpoint);
            files = Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories)
                .Select(f => Path.GetRelativePath(root, f).Replace('\\', '/'))
                .Where(f => !f.StartsWith('.') && !f.Contains("/."))
                .Order(StringComparer.Ordinal);
        }
        else if (File.Exists(checkpoint))
        {
            var full = Path.GetFullPath(checkpoint);
            root = Path.GetDirectoryName(full)!;
            var yaml = Path.ChangeExtension(full, ".yaml");
            files = File.Exists(yaml) ? [Path.GetFileName(full), Path.GetFileName(yaml)] : [Path.GetFileName(full)];
        }
        else
        {
            return "(missing)";
        }
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[65536];
        foreach (var rel in files)
        {
            var path = Path.Combine(root, rel);
            using var fs = File.OpenRead(path);
            long size = fs.Length;
            sha.AppendData(Encoding.UTF8.GetBytes($"{rel}\0{size}\0"));
            if ((rel.EndsWith(".json", StringComparison.OrdinalIgnoreCase) || rel.EndsWith(".yaml", StringComparison.OrdinalIgnoreCase)) && size < (8 << 20))
            {
                fs.CopyTo(new HashStream(sha));
                continue;
            }
            int n = fs.ReadAtLeast(buffer, (int)Math.Min(buffer.Length, size), throwOnEndOfStream: false);
            sha.AppendData(buffer, 0, n);
            if (size > buffer.Length)
            {
                fs.Seek(Math.Max(buffer.Length, size - buffer.Length), SeekOrigin.Begin);
                n = fs.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false);
                sha.AppendData(buffer, 0, n);
            }
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset())[..16];
    }

    private sealed class HashStream(IncrementalHash hash) : Stream
    {
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => hash.AppendData(buffer, offset, count);
    }
}
