using System.Text.Json;

namespace Elect.Modeling;

/// <summary>
/// A component's <c>config.json</c> (diffusers / transformers). Accessors name the file and key in
/// their errors, so a wrong or incomplete checkpoint says what is wrong.
/// </summary>
public sealed class ModelConfig
{
    private readonly JsonElement _root;

    public ModelConfig(JsonElement root, string source)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"{source}: expected a JSON object");
        _root = root.Clone();
        Source = source;
    }

    /// <summary>Where the config came from (used in error messages).</summary>
    public string Source { get; }

    public static ModelConfig Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"missing config file {path}", path);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            return new ModelConfig(doc.RootElement, path);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON ({e.Message})");
        }
    }

    public bool Has(string key) => _root.TryGetProperty(key, out var v) && v.ValueKind != JsonValueKind.Null;

    public JsonElement? Raw(string key) => Has(key) ? _root.GetProperty(key) : null;

    private JsonElement Require(string key) =>
        Has(key) ? _root.GetProperty(key) : throw new InvalidDataException($"{Source}: missing key '{key}'");

    public int Int(string key) => Wrap(key, e => e.GetInt32());
    public int Int(string key, int fallback) => Has(key) ? Int(key) : fallback;
    public long Long(string key) => Wrap(key, e => e.GetInt64());
    public double Double(string key) => Wrap(key, e => e.GetDouble());
    public double Double(string key, double fallback) => Has(key) ? Double(key) : fallback;
    public bool Bool(string key, bool fallback) => Has(key) ? Wrap(key, e => e.GetBoolean()) : fallback;
    public string String(string key) => Wrap(key, e => e.GetString()!);
    public string String(string key, string fallback) => Has(key) ? String(key) : fallback;
    public int[] Ints(string key) => Wrap(key, e => e.EnumerateArray().Select(x => x.GetInt32()).ToArray());
    public string[] Strings(string key) => Wrap(key, e => e.EnumerateArray().Select(x => x.GetString()!).ToArray());

    /// <summary>An int, or a per-block int array (diffusers accepts both for several keys).</summary>
    public int[] IntOrInts(string key, int count) => Wrap(key, e =>
        e.ValueKind == JsonValueKind.Array ? e.EnumerateArray().Select(x => x.GetInt32()).ToArray() : Enumerable.Repeat(e.GetInt32(), count).ToArray());

    private T Wrap<T>(string key, Func<JsonElement, T> get)
    {
        var e = Require(key);
        try { return get(e); }
        catch (Exception ex) when (ex is InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{Source}: key '{key}' has an unexpected value {e.GetRawText()}");
        }
    }
}
