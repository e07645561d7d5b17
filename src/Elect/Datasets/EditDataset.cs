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
                    string image = p.Value.TryGetProperty("image_path", out var ip) && ip.ValueKind == JsonValueKind.String
                        ? ip.GetString()! : throw new InvalidDataException("missing image_path");
                    string instruction = p.Value.TryGetProperty("editing_instruction", out var ins) && ins.ValueKind == JsonValueKind.String
                        ? ins.GetString()! : throw new InvalidDataException("missing editing_instruction");
                    int[]? rle = null;
                    if (p.Value.TryGetProperty("mask", out var m) && m.ValueKind == JsonValueKind.Array)
                        rle = m.EnumerateArray().Select(x => x.GetInt32()).ToArray();
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

    private static bool IsSafeKey(string key) =>
        key.Length > 0 && key != "." && key != ".." && key.IndexOfAny(['/', '\\', '\0']) < 0;
}
