using System.Text.RegularExpressions;

namespace Elect.Cli;

/// <summary>
/// The library's errors name its own API (<c>SelectionOptions.StoppingStep</c>, <c>Editor.Load(tokenizerPath)</c>,
/// "the ultraedit family"); the command line speaks of its flags. This maps the one onto the other in the
/// one-line errors, so that they name what the user typed.
/// </summary>
internal static partial class LibraryNames
{
    /// <summary>Library name → flag. Each name is matched as a whole (not inside a longer identifier).</summary>
    private static readonly (string Name, string Flag)[] Flags =
    [
        ("EditOptions.InferenceSteps", "--inference-steps"),
        ("EditOptions.TextGuidance", "--text-cfg-scale"),
        ("EditOptions.ImageGuidance", "--image-cfg-scale"),
        ("EditOptions.MaxBatch", "--max-batch"),
        ("SelectionOptions.StoppingStep", "--stopping-step"),
        ("SelectionOptions.FirstMaskStep", "--first-step-for-mask-extraction"),
        ("SelectionOptions.LastMaskStep", "--last-step-for-mask-extraction"),
        ("SelectionOptions.KeepAllSeeds", "--visualize-all-seeds"),
        ("SelectionOptions.PruneAt", "--prune-at"),
        ("SelectionOptions.Keep", "--keep"),
        ("SelectionOptions.AutoStopInterval", "--auto-stop-interval"),
        ("SelectionOptions.AutoStopPatience", "--auto-stop-patience"),
        ("SelectionOptions.AutoStopMargin", "--auto-stop-margin"),
        ("SelectionOptions.AutoStopMaxStep", "--auto-stop-max-step"),
        ("SelectionOptions.AutoStop", "--stopping-step auto"),
        ("SelectionOptions.KnownMask", "--known-mask"),
        ("Editor.Load(folder)", "--model-path"),
        ("Editor.Load(tokenizerPath)", "--tokenizer-path"),
        ("Editor.Load(dtype)", "--dtype"),
        ("Editor.Edit(mask)", "--mask-image"),
    ];

    private static readonly Regex Pattern = new(
        string.Join("|", Flags.Select(f => $@"(?<![\w.]){Regex.Escape(f.Name)}(?![\w(])")), RegexOptions.CultureInvariant);

    /// <summary>"the X family" → "--model X".</summary>
    [GeneratedRegex(@"\bthe ([a-z0-9]+) family\b", RegexOptions.CultureInvariant)]
    private static partial Regex Family();

    public static string ToFlags(string message)
    {
        message = Pattern.Replace(message, m => Flags.First(f => f.Name == m.Value).Flag);
        return Family().Replace(message, m => Editor.Families.Contains(m.Groups[1].Value) ? $"--model {m.Groups[1].Value}" : m.Value);
    }
}
