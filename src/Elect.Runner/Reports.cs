using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using Elect.Selection;

namespace Elect.Runner;

// The JSON files of the elect command as typed records, serialised by System.Text.Json source generation
// (snake_case names, indented). Property order is the field order of the files; members that are absent
// from a file (rather than null) carry [JsonIgnore(WhenWritingNull)].

/// <summary>Seconds per phase of an edit (<see cref="PhaseTimes"/>), rounded to 0.1 ms.</summary>
public sealed record PhaseSeconds
{
    public double Prepare { get; init; }
    public double Candidates { get; init; }
    public double Selection { get; init; }
    public double Finish { get; init; }
    public double Decode { get; init; }

    /// <summary>The sum of the phases; absent from the bench's per-mode phases.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? Total { get; init; }

    public static PhaseSeconds From(PhaseTimes t, bool withTotal) => new()
    {
        Prepare = Math.Round(t.Prepare, 4),
        Candidates = Math.Round(t.Candidates, 4),
        Selection = Math.Round(t.Selection, 4),
        Finish = Math.Round(t.Finish, 4),
        Decode = Math.Round(t.Decode, 4),
        Total = withTotal ? Math.Round(t.Total, 4) : null,
    };
}

/// <summary>One candidate seed of an edit and, under ELECT, its background inconsistency score.</summary>
public sealed record CandidateReport
{
    public long Seed { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? Bis { get; init; }

    /// <summary>The step of <see cref="Bis"/> (with pruning only).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? ScoredAtStep { get; init; }

    /// <summary>The pruning step that dropped the candidate (absent: it reached the stopping step).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? PrunedAtStep { get; init; }
}

/// <summary>How far the selection can be trusted (<see cref="SelectionConfidence"/>); non-finite values are written as null.</summary>
public sealed record ConfidenceReport
{
    public double? Margin { get; init; }
    public double? RelativeMargin { get; init; }
    public double? Spread { get; init; }
    public double MaskCoverage { get; init; }
    public IReadOnlyList<string> Flags { get; init; } = [];

    public static ConfidenceReport From(SelectionConfidence c) => new()
    {
        Margin = Finite(c.Margin),
        RelativeMargin = Finite(c.RelativeMargin),
        Spread = Finite(c.Spread),
        MaskCoverage = Math.Round(c.MaskCoverage, 6),
        Flags = c.Flags.ToArray(),
    };

    private static double? Finite(double? v) => v is { } x && double.IsFinite(x) ? x : null;
}

/// <summary>One check of adaptive stopping: the step, the leading seed and its relative margin (null when infinite).</summary>
public sealed record StopCheckReport
{
    public int Step { get; init; }
    public long Leader { get; init; }
    public double? Margin { get; init; }
}

/// <summary>A dataset item whose selection raised a confidence flag.</summary>
public sealed record ReviewItem
{
    public string Key { get; init; } = "";
    public IReadOnlyList<string> Flags { get; init; } = [];
}

/// <summary>The report of one edit (<c>--report</c> of run-single, <c>{key}_report.json</c> of run-dataset).</summary>
public sealed record EditReport
{
    public string Input { get; init; } = "";
    public string Instruction { get; init; } = "";

    /// <summary><c>plain</c> or <c>elect</c>.</summary>
    public string Mode { get; init; } = "";

    public int Steps { get; init; }
    public int? StoppingStep { get; init; }
    public IReadOnlyList<CandidateReport> Candidates { get; init; } = [];
    public long? BestSeed { get; init; }
    public long Nfe { get; init; }
    public long NfeBestOfN { get; init; }
    public double NfeSavedFraction { get; init; }
    public PhaseSeconds Seconds { get; init; } = new();
    public IReadOnlyList<string> Outputs { get; init; } = [];

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Model { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Device { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Dtype { get; init; }

    /// <summary>The dataset item's image (run-dataset).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? ImagePath { get; init; }

    /// <summary>The input image (run-single).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? InputPath { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public MemorySnapshot? Memory { get; init; }

    /// <summary>ELECT's strategy: <c>elect</c>, with <c>+prune</c>, <c>+auto-stop</c>, <c>+known-mask</c> (<see cref="EditResult.Strategy"/>).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Strategy { get; init; }

    /// <summary>What plain ELECT at the same stopping step costs, next to <see cref="Nfe"/> and <see cref="NfeBestOfN"/>.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public long? NfePlainElect { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public ConfidenceReport? Confidence { get; init; }

    /// <summary>The checks of adaptive stopping.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<StopCheckReport>? StopChecks { get; init; }

    /// <summary>The instruction the family's multimodal LLM wrote from the image and <see cref="Instruction"/> (MGIE).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? ExpressiveInstruction { get; init; }

    /// <summary>How many tokens the multimodal LLM generated for <see cref="ExpressiveInstruction"/>.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? GeneratedTokens { get; init; }

    /// <summary>The report of one edit: candidates and their BIS, the winner, model evaluations and phase times.</summary>
    public static EditReport Create(string name, string instruction, EditResult result, IReadOnlyList<string> files, Editor? editor = null) => new()
    {
        Input = name,
        Instruction = instruction,
        Mode = result.BestSeed is null ? "plain" : "elect",
        Steps = result.Steps,
        StoppingStep = result.StoppingStep,
        Candidates = result.Seeds.Select((seed, k) => new CandidateReport
        {
            Seed = seed,
            Bis = result.Bis?[k],
            ScoredAtStep = result.PrunedAtStep is null ? null : result.ScoredAtStep?[k],
            PrunedAtStep = result.PrunedAtStep?[k],
        }).ToArray(),
        BestSeed = result.BestSeed,
        Nfe = result.ModelEvaluations,
        NfeBestOfN = result.BestOfNEvaluations,
        NfeSavedFraction = result.BestOfNEvaluations == 0 ? 0 : Math.Round(1 - (double)result.ModelEvaluations / result.BestOfNEvaluations, 4),
        Seconds = PhaseSeconds.From(result.Times, withTotal: true),
        Outputs = files.ToArray(),
        Model = editor?.Model.Name,
        Device = editor?.Model.Device.ToString(),
        Dtype = editor?.Model.DType.ToString(),
        Strategy = result.Strategy,
        NfePlainElect = result.PlainElectEvaluations,
        Confidence = result.Confidence is { } c ? ConfidenceReport.From(c) : null,
        StopChecks = result.StopChecks?.Select(s => new StopCheckReport
        {
            Step = s.Step,
            Leader = result.Seeds[s.Leader],
            Margin = double.IsFinite(s.Margin) ? s.Margin : null,
        }).ToArray(),
        ExpressiveInstruction = result.Generated?.Text,
        GeneratedTokens = result.Generated?.GeneratedTokens,
    };
}

/// <summary>A dataset item that failed or could not be read, and why.</summary>
public sealed record ItemFailure
{
    public string Key { get; init; } = "";
    public string Error { get; init; } = "";
}

/// <summary><c>summary.json</c> of a dataset run (see <see cref="DatasetRunner"/>).</summary>
public sealed record DatasetSummary
{
    public string Dataset { get; init; } = "";

    /// <summary><c>pie-bench</c> or <c>generic</c>.</summary>
    public string Format { get; init; } = "";

    /// <summary>Items of the dataset, malformed entries included.</summary>
    public int Items { get; init; }

    /// <summary>Items with a report in the output folder (this run's and earlier runs').</summary>
    public int Completed { get; init; }

    /// <summary>Items edited by this run.</summary>
    public int Done { get; init; }

    public int SkippedResume { get; init; }
    public int Failed { get; init; }
    public int Pending { get; init; }
    public bool Interrupted { get; init; }
    public long Nfe { get; init; }
    public long NfeBestOfN { get; init; }
    public double Seconds { get; init; }
    public MemoryTrend Memory { get; init; } = new();
    public IReadOnlyList<EditReport> Results { get; init; } = [];
    public IReadOnlyList<ItemFailure> Failures { get; init; } = [];

    /// <summary>Σ nfe_plain_elect over the results that have it (ELECT runs).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public long? NfePlainElect { get; init; }

    /// <summary>The items worth a second look: those whose selection raised a confidence flag.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<ReviewItem>? Review { get; init; }
}

/// <summary>The figures of one bench mode.</summary>
public sealed record BenchModeResult
{
    public int Candidates { get; init; }
    public int? StoppingStep { get; init; }
    public double MedianS { get; init; }
    public IReadOnlyList<double> RunsS { get; init; } = [];
    public long Nfe { get; init; }
    public PhaseSeconds? LastRunPhasesS { get; init; }

    /// <summary>After every run, warm-ups included: max is the peak, growth shows leaks.</summary>
    public MemoryTrend Memory { get; init; } = new();
}

/// <summary>The document <c>elect bench</c> prints (and writes to <c>--output</c>).</summary>
public sealed record BenchReport
{
    public string Device { get; init; } = "";
    public string Dtype { get; init; } = "";
    public string Family { get; init; } = "";
    public string Weights { get; init; } = "";
    public long DenoiserParameters { get; init; }
    public int Resolution { get; init; }
    public int Steps { get; init; }
    public int Candidates { get; init; }
    public int StoppingStep { get; init; }
    public int? MaxBatch { get; init; }
    public string DateUtc { get; init; } = "";

    /// <summary>Mode name → figures, in the order the modes ran.</summary>
    public IReadOnlyDictionary<string, BenchModeResult> Modes { get; init; } = new Dictionary<string, BenchModeResult>();

    public string Excluded { get; init; } = "";

    /// <summary>False in the documents handed out after each mode but the last.</summary>
    public bool Complete { get; init; }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = true)]
[JsonSerializable(typeof(EditReport))]
[JsonSerializable(typeof(DatasetSummary))]
[JsonSerializable(typeof(BenchReport))]
[JsonSerializable(typeof(RunManifest))]
[JsonSerializable(typeof(MemorySnapshot))]
[JsonSerializable(typeof(MemoryTrend))]
internal sealed partial class RunnerJsonContext : JsonSerializerContext;

/// <summary>Reads and writes the JSON files of the elect command (atomic writes: temp file + rename).</summary>
public static class JsonFiles
{
    /// <summary>
    /// The generated context's options (snake_case, indented) with relaxed escaping, so that instructions
    /// and paths stay readable (<c>'</c>, <c>&lt;</c>, <c>&amp;</c> are not escaped).
    /// </summary>
    public static readonly JsonSerializerOptions Options = new(RunnerJsonContext.Default.Options)
    {
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    private static JsonTypeInfo<T> Info<T>() => (JsonTypeInfo<T>)Options.GetTypeInfo(typeof(T));

    /// <summary><paramref name="value"/> as indented JSON.</summary>
    public static string ToJson<T>(T value) => JsonSerializer.Serialize(value, Info<T>());

    /// <summary>Parses <paramref name="json"/>; null for a JSON <c>null</c>.</summary>
    /// <exception cref="JsonException">not valid JSON, or not of the shape of <typeparamref name="T"/>.</exception>
    public static T? FromJson<T>(string json) => JsonSerializer.Deserialize(json, Info<T>());

    /// <summary>Parses a JSON object; null when the document is valid JSON but not an object.</summary>
    /// <exception cref="JsonException">not valid JSON, or an object not of the shape of <typeparamref name="T"/>.</exception>
    public static T? FromJsonObject<T>(string json) where T : class
    {
        using var doc = JsonDocument.Parse(json);
        return doc.RootElement.ValueKind == JsonValueKind.Object ? doc.RootElement.Deserialize(Info<T>()) : null;
    }

    /// <summary>Writes <paramref name="value"/> as JSON atomically (temp file + rename).</summary>
    public static void Write<T>(string path, T value)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        var tmp = path + ".tmp";
        File.WriteAllText(tmp, ToJson(value) + "\n");
        File.Move(tmp, path, overwrite: true);
    }
}
