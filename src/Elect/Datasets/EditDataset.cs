using System.Text.Json;

namespace Elect.Datasets;

/// <summary>One editing task of a dataset.</summary>
public sealed record DatasetItem(string Key, string ImagePath, string Instruction, int[]? MaskRle = null);

/// <summary>
/// Dataset readers. PIE-Bench: <c>mapping_file.json</c> in the dataset folder, a map of key →
/// {image_path (relative to <c>annotation_images/</c>), editing_instruction, mask (RLE), ...}.
/// Generic: <c>dataset.json</c>, a map of key → {image_path (relative to the dataset folder or
/// absolute), editing_instruction}. A malformed entry is returned as an item with an error so the
/// run can log and skip it without losing the others.
/// </summary>
public static class EditDataset
{
    public const string PieBenchFile = "mapping_file.json";
    public const string GenericFile = "dataset.json";

    /// <summary>An entry that could not be read: its key and why.</summary>
    public sealed record BadEntry(string Key, string Error);

    public static (IReadOnlyList<DatasetItem> Items, IReadOnlyList<BadEntry> Bad, string Format) Load(string datasetDir)
    {
        if (!Directory.Exists(datasetDir))
            throw new DirectoryNotFoundException($"dataset folder not found: {datasetDir}");
        var pie = Path.Combine(datasetDir, PieBenchFile);
        var generic = Path.Combine(datasetDir, GenericFile);
        if (File.Exists(pie)) return Read(pie, Path.Combine(datasetDir, "annotation_images"), "pie-bench");
        if (File.Exists(generic)) return Read(generic, datasetDir, "generic");
        throw new FileNotFoundException($"{datasetDir}: no {PieBenchFile} (PIE-Bench) or {GenericFile} (generic key -> {{image_path, editing_instruction}} map)");
    }

    private static (IReadOnlyList<DatasetItem>, IReadOnlyList<BadEntry>, string) Read(string file, string imageRoot, string format)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllText(file)); }
        catch (JsonException e) { throw new InvalidDataException($"{file}: not valid JSON ({e.Message})"); }
        using (doc)
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
                    items.Add(new DatasetItem(p.Name, path, instruction, rle));
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
