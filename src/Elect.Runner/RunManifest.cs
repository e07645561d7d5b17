using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Elect.Editing;
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
public static class RunManifest
{
    public const string FileName = "run_manifest.json";

    /// <summary>Keys recorded for information only, never compared.</summary>
    private static readonly HashSet<string> Informational = ["checkpoint", "created_utc", "previous", "format"];

    public static JsonObject Create(string family, string checkpointFolder, ScalarType dtype, int resolution, EditOptions edit,
                                    float textGuidance, SelectionOptions? selection, IReadOnlyList<long> seeds, int randomCandidates)
    {
        var o = new JsonObject
        {
            ["format"] = 1,
            ["model"] = family,
            ["checkpoint"] = Path.GetFullPath(checkpointFolder),
            ["checkpoint_id"] = CheckpointIdentity(checkpointFolder),
            ["dtype"] = dtype.ToString(),
            ["resolution"] = resolution,
            ["inference_steps"] = edit.InferenceSteps,
            ["text_cfg_scale"] = textGuidance,
            ["image_cfg_scale"] = edit.ImageGuidance,
            ["mode"] = selection is null ? "plain" : "elect",
            ["seeds"] = new JsonArray(seeds.Select(s => (JsonNode)JsonValue.Create(s)!).ToArray()),
            ["random_candidates"] = randomCandidates,
        };
        if (selection is not null)
        {
            o["stopping_step"] = selection.StoppingStep;
            o["first_step_for_mask_extraction"] = selection.FirstMaskStep;
            o["last_step_for_mask_extraction"] = selection.LastMaskStep;
            o["visualize_all_seeds"] = selection.KeepAllSeeds;
        }
        o["created_utc"] = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ");
        return o;
    }

    /// <summary>The manifest in <paramref name="outputDir"/>, or null when there is none.</summary>
    /// <exception cref="InvalidDataException">it exists but is not a JSON object.</exception>
    public static JsonObject? Read(string outputDir)
    {
        var path = Path.Combine(outputDir, FileName);
        if (!File.Exists(path)) return null;
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)) as JsonObject
                   ?? throw new InvalidDataException($"{path}: not a JSON object (delete it, or use another --output-dir)");
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON ({e.Message}); delete it, or use another --output-dir");
        }
    }

    /// <summary>The seeds an earlier run drew at random, when it drew <paramref name="randomCandidates"/> of them.</summary>
    public static long[]? RandomSeedsOf(JsonObject? existing, int randomCandidates)
    {
        if (existing is null || randomCandidates <= 0) return null;
        if (existing["random_candidates"] is not JsonValue v || !v.TryGetValue<int>(out var n) || n != randomCandidates) return null;
        if (existing["seeds"] is not JsonArray a || a.Count != n) return null;
        return a.Select(x => x!.GetValue<long>()).ToArray();
    }

    /// <summary>Human-readable differences in the compared settings: <c>resolution 128 -&gt; 64</c>.</summary>
    public static IReadOnlyList<string> Differences(JsonObject existing, JsonObject current)
    {
        var keys = existing.Select(kv => kv.Key).Concat(current.Select(kv => kv.Key)).Where(k => !Informational.Contains(k)).Distinct();
        var diffs = new List<string>();
        foreach (var k in keys)
        {
            string a = Text(existing[k]), b = Text(current[k]);
            if (a != b) diffs.Add($"{k} {a} -> {b}");
        }
        return diffs;
    }

    private static string Text(JsonNode? n) => n switch
    {
        null => "(none)",
        JsonArray a => string.Join(" ", a.Select(x => Text(x))),
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        _ => n.ToJsonString(),
    };

    /// <summary>
    /// Checks <paramref name="current"/> against the manifest already in <paramref name="outputDir"/> and writes it:
    /// refuses differing settings, when the folder holds item reports, unless <paramref name="force"/> (then the new manifest records the old ones under
    /// <c>previous</c>). Returns the differences that were forced through (empty normally).
    /// </summary>
    /// <exception cref="InvalidOperationException">the settings differ and <paramref name="force"/> is false.</exception>
    public static IReadOnlyList<string> CheckAndWrite(string outputDir, JsonObject current, bool force)
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
        {
            var previous = existing["previous"] as JsonArray ?? [];
            existing.Remove("previous");
            previous.Add(existing.DeepClone());
            current["previous"] = previous.DeepClone();
        }
        JsonReports.WriteJson(Path.Combine(outputDir, FileName), current);
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
