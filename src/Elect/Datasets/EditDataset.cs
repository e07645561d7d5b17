using System.Text.Json;

namespace Elect.Datasets;

/// <summary>
/// One editing task of a dataset; <paramref name="Target"/> is its ground truth where the dataset has one (MagicBrush);
/// <paramref name="Session"/> and <paramref name="Turn"/> (1-based) place a published MagicBrush item in its editing session
/// (null and 0 elsewhere).
/// </summary>
public sealed record DatasetItem(string Key, string ImagePath, string Instruction, int[]? MaskRle = null, GroundTruth? Target = null,
                                 string? Session = null, int Turn = 0);

/// <summary>An item's ground-truth edit: the target image and the caption CLIP-T compares with (null when the dataset has none for it).</summary>
public sealed record GroundTruth(string ImagePath, string? Caption);

/// <summary>Which of the published MagicBrush test set's caption files is an item's <see cref="GroundTruth.Caption"/>.</summary>
public enum MagicBrushCaptions
{
    /// <summary><c>local_descriptions.json</c> (what MagicBrush's evaluation README passes as <c>--caption_path</c>).</summary>
    Local,

    /// <summary><c>global_descriptions.json</c> (image_eval.py's default <c>--caption_path</c> names this kind).</summary>
    Global,
}

/// <summary>
/// How the turns of a published MagicBrush session are edited (MagicBrush's edit_cli_single_multi_turn.py does both).
/// </summary>
public enum MagicBrushTurns
{
    /// <summary>Every turn from its ground-truth input (the single-turn / all-turn setting): keys <c>{id}_1</c>, <c>{id}_inde_{t}</c>.</summary>
    Independent,

    /// <summary>
    /// Turn 1 from the session's source image, turn t &gt;= 2 from the model's own output of turn t-1 (the multi-turn / final-turn
    /// setting): keys <c>{id}_1</c> (shared with <see cref="Independent"/>), <c>{id}_iter_{t}</c>. Each item's
    /// <see cref="DatasetItem.ImagePath"/> is still the turn's ground-truth input; the run replaces it with the previous output.
    /// </summary>
    Iterative,
}

/// <summary>
/// Dataset readers. PIE-Bench: <c>mapping_file.json</c> in the dataset folder, a map of key →
/// {image_path (relative to <c>annotation_images/</c>), editing_instruction, mask (RLE), ...}.
/// Generic: <c>dataset.json</c>, a map of key → {image_path (relative to the dataset folder or
/// absolute), editing_instruction}. MagicBrush: either ELECT's <c>preprocessed.json</c> (key →
/// {image_path, editing_instruction}, paths relative to the dataset folder or absolute), optionally with the ground
/// truth <c>target_image_path</c> and <c>target_caption</c>; or the published test set (a folder with
/// <c>edit_sessions.json</c> and <c>images/</c>, or its parent holding <c>test/</c>): one item per turn, keyed as
/// MagicBrush's single-turn outputs are named (<c>{id}_1</c>, <c>{id}_inde_{t}</c>), its input the turn's
/// <c>input</c> (the previous turn's ground truth), its target the turn's <c>output</c>, its caption from
/// <c>local_descriptions.json</c> or <c>global_descriptions.json</c>. A malformed entry is returned as an item with
/// an error so the run can log and skip it without losing the others.
/// </summary>
public static class EditDataset
{
    public const string PieBenchFile = "mapping_file.json";
    public const string GenericFile = "dataset.json";
    public const string MagicBrushFile = "preprocessed.json";
    public const string MagicBrushSessionsFile = "edit_sessions.json";

    /// <summary>An entry that could not be read: its key and why.</summary>
    public sealed record BadEntry(string Key, string Error);

    /// <summary>The format names <see cref="Load"/> returns.</summary>
    public const string PieBenchFormat = "pie-bench", GenericFormat = "generic", MagicBrushFormat = "magicbrush", MagicBrushSessionsFormat = "magicbrush-sessions";

    /// <summary>Reads a dataset folder, detected by its index file (in this order): <c>mapping_file.json</c>,
    /// <c>preprocessed.json</c>, <c>edit_sessions.json</c> (or <c>test/edit_sessions.json</c>), <c>dataset.json</c>.</summary>
    public static (IReadOnlyList<DatasetItem> Items, IReadOnlyList<BadEntry> Bad, string Format) Load(string datasetDir, MagicBrushCaptions captions = MagicBrushCaptions.Local)
        => Load(datasetDir, captions, MagicBrushTurns.Independent);

    /// <summary>
    /// <see cref="Load(string, MagicBrushCaptions)"/> with the published MagicBrush test set's items keyed for
    /// <paramref name="turns"/> (<see cref="MagicBrushKey(string, int, MagicBrushTurns)"/>); other formats ignore it.
    /// </summary>
    public static (IReadOnlyList<DatasetItem> Items, IReadOnlyList<BadEntry> Bad, string Format) Load(string datasetDir, MagicBrushCaptions captions, MagicBrushTurns turns)
    {
        if (!Directory.Exists(datasetDir))
            throw new DirectoryNotFoundException($"dataset folder not found: {datasetDir}");
        var pie = Path.Combine(datasetDir, PieBenchFile);
        var generic = Path.Combine(datasetDir, GenericFile);
        var preprocessed = Path.Combine(datasetDir, MagicBrushFile);
        if (File.Exists(pie)) return Read(pie, Path.Combine(datasetDir, "annotation_images"), PieBenchFormat);
        if (File.Exists(preprocessed)) return Read(preprocessed, datasetDir, MagicBrushFormat);
        foreach (var root in new[] { datasetDir, Path.Combine(datasetDir, "test") })
            if (File.Exists(Path.Combine(root, MagicBrushSessionsFile))) return ReadSessions(root, captions, turns);
        if (File.Exists(generic)) return Read(generic, datasetDir, GenericFormat);
        throw new FileNotFoundException($"{datasetDir}: no {PieBenchFile} (PIE-Bench), {MagicBrushFile} or {MagicBrushSessionsFile} (MagicBrush) or {GenericFile} (generic key -> {{image_path, editing_instruction}} map)");
    }

    /// <summary>The folder that holds <c>edit_sessions.json</c> of a published-layout MagicBrush dataset folder.</summary>
    public static string MagicBrushRoot(string datasetDir) =>
        File.Exists(Path.Combine(datasetDir, MagicBrushSessionsFile)) ? datasetDir : Path.Combine(datasetDir, "test");

    /// <summary>The key of MagicBrush turn <paramref name="turn"/> (1-based) of session <paramref name="id"/>, as its single-turn outputs are named.</summary>
    public static string MagicBrushKey(string id, int turn) => MagicBrushKey(id, turn, MagicBrushTurns.Independent);

    /// <summary>
    /// The key of turn <paramref name="turn"/> (1-based) of session <paramref name="id"/> as edit_cli_single_multi_turn.py names
    /// its outputs: <c>{id}_1</c> for turn 1 in both settings, then <c>{id}_inde_{t}</c> (independent) or <c>{id}_iter_{t}</c> (iterative).
    /// </summary>
    public static string MagicBrushKey(string id, int turn, MagicBrushTurns turns) =>
        turn == 1 ? $"{id}_1" : turns == MagicBrushTurns.Iterative ? $"{id}_iter_{turn}" : $"{id}_inde_{turn}";

    private static JsonDocument ParseFile(string file)
    {
        try { return JsonDocument.Parse(File.ReadAllText(file)); }
        catch (JsonException e) { throw new InvalidDataException($"{file}: not valid JSON ({e.Message})"); }
    }

    private static (IReadOnlyList<DatasetItem>, IReadOnlyList<BadEntry>, string) ReadSessions(string root, MagicBrushCaptions which, MagicBrushTurns turns)
    {
        var file = Path.Combine(root, MagicBrushSessionsFile);
        var captionFile = Path.Combine(root, which == MagicBrushCaptions.Local ? "local_descriptions.json" : "global_descriptions.json");
        JsonDocument? captions = File.Exists(captionFile) ? ParseFile(captionFile) : null;
        using var doc = ParseFile(file);
        using var _ = captions;
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"{file}: expected a JSON object mapping session ids to lists of turns");
        string? Caption(string id, string output)
        {
            if (captions is null || captions.RootElement.ValueKind != JsonValueKind.Object) return null;
            var r = captions.RootElement;
            if (r.TryGetProperty(id, out var s) && s.ValueKind == JsonValueKind.Object && s.TryGetProperty(output, out var c) && c.ValueKind == JsonValueKind.String)
                return c.GetString();
            return r.TryGetProperty(output, out var flat) && flat.ValueKind == JsonValueKind.String ? flat.GetString() : null;   // a flat file-name -> caption map
        }
        var items = new List<DatasetItem>();
        var bad = new List<BadEntry>();
        foreach (var session in doc.RootElement.EnumerateObject())
        {
            if (!IsSafeKey(session.Name)) { bad.Add(new BadEntry(session.Name, "session id is not usable as a folder name")); continue; }
            if (session.Value.ValueKind != JsonValueKind.Array) { bad.Add(new BadEntry(session.Name, "session is not a list of turns")); continue; }
            int turn = 0;
            foreach (var t in session.Value.EnumerateArray())
            {
                turn++;
                var key = MagicBrushKey(session.Name, turn, turns);
                try
                {
                    if (t.ValueKind != JsonValueKind.Object) throw new InvalidDataException("turn is not an object");
                    string input = StringField(t, "input"), output = StringField(t, "output"), instruction = StringField(t, "instruction");
                    if (!IsSafeKey(input) || !IsSafeKey(output)) throw new InvalidDataException("input/output must be file names");
                    var dir = Path.Combine(root, "images", session.Name);
                    items.Add(new DatasetItem(key, Path.Combine(dir, input), instruction, null,
                        new GroundTruth(Path.Combine(dir, output), Caption(session.Name, output)), session.Name, turn));
                }
                catch (Exception e) when (e is InvalidDataException or InvalidOperationException or FormatException)
                {
                    bad.Add(new BadEntry(key, e.Message));
                }
            }
        }
        return (items, bad, MagicBrushSessionsFormat);
    }

    private static (IReadOnlyList<DatasetItem>, IReadOnlyList<BadEntry>, string) Read(string file, string imageRoot, string format)
    {
        using (var doc = ParseFile(file))
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{file}: expected a JSON object mapping keys to items");
            var items = new List<DatasetItem>();
            var bad = new List<BadEntry>();
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                try
                {
                    if (p.Value.ValueKind != JsonValueKind.Object) throw new InvalidDataException("entry is not an object");
                    string image = StringField(p.Value, "image_path");
                    if (image.Length == 0) throw new InvalidDataException("image_path is empty");
                    string instruction = StringField(p.Value, "editing_instruction");
                    int[]? rle = null;
                    if (p.Value.TryGetProperty("mask", out var m)) rle = MaskField(m);
                    if (!IsSafeKey(p.Name)) throw new InvalidDataException("key is not usable as a file name");
                    var path = Path.IsPathRooted(image) ? image : Path.Combine(imageRoot, image);
                    GroundTruth? target = null;
                    if (p.Value.TryGetProperty("target_image_path", out var tv) && tv.ValueKind != JsonValueKind.Null)
                    {
                        string t = StringField(p.Value, "target_image_path");
                        if (t.Length == 0) throw new InvalidDataException("target_image_path is empty");
                        string? caption = p.Value.TryGetProperty("target_caption", out var cv) && cv.ValueKind != JsonValueKind.Null ? StringField(p.Value, "target_caption") : null;
                        target = new GroundTruth(Path.IsPathRooted(t) ? t : Path.Combine(imageRoot, t), caption);
                    }
                    items.Add(new DatasetItem(p.Name, path, instruction, rle, target));
                }
                catch (Exception e) when (e is InvalidDataException or InvalidOperationException or FormatException)
                {
                    bad.Add(new BadEntry(p.Name, e.Message));
                }
            }
            return (items, bad, format);
        }
    }

    private static string StringField(JsonElement entry, string name)
    {
        if (!entry.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) throw new InvalidDataException($"missing {name}");
        if (v.ValueKind != JsonValueKind.String)
            throw new InvalidDataException($"{name} must be a string, got {Kind(v)} {Clip(v.GetRawText())}");
        return v.GetString()!;
    }

    /// <summary>PIE-Bench's RLE mask: (start, length) pairs of non-negative integers.</summary>
    private static int[]? MaskField(JsonElement m)
    {
        if (m.ValueKind == JsonValueKind.Null) return null;
        if (m.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException($"mask must be an array of (start, length) integer pairs, got {Kind(m)} {Clip(m.GetRawText())}");
        var values = new List<int>();
        int index = 0;
        foreach (var x in m.EnumerateArray())
        {
            if (x.ValueKind != JsonValueKind.Number || !x.TryGetInt32(out var v) || v < 0)
                throw new InvalidDataException($"mask value {index} must be a non-negative integer, got {Clip(x.GetRawText())}");
            values.Add(v);
            index++;
        }
        if (values.Count % 2 != 0)
            throw new InvalidDataException($"mask has an odd number of values ({values.Count}); expected (start, length) pairs");
        return values.ToArray();
    }

    private static string Kind(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.Number => "a number",
        JsonValueKind.String => "a string",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Array => "an array",
        JsonValueKind.Object => "an object",
        _ => v.ValueKind.ToString().ToLowerInvariant(),
    };

    private static string Clip(string raw) => raw.Length <= 40 ? raw : raw[..37] + "...";

    private static bool IsSafeKey(string key) =>
        key.Length > 0 && key != "." && key != ".." && key.IndexOfAny(['/', '\\', '\0']) < 0;
}
