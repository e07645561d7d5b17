using System.Numerics;

namespace Elect.Evaluation;

/// <summary>
/// How OSU-NLP-Group/MagicBrush evaluation/image_eval.py picks a session's final-turn pair from the file names of its folders
/// (<c>get_final_turn_img</c>), re-expressed on a list of names: only names containing <c>.png</c> or <c>.jpg</c> and not
/// <c>mask</c> count; the generated side is the one image if there is exactly one and its name contains <c>_1</c>, else the last
/// name containing <c>iter_</c>; the ground-truth side is the last name containing <c>output</c>; "last" after a stable sort
/// by <c>int(''.join(filter(str.isdigit, x)))</c> (<see cref="DigitKey"/>). Where the reference raises, these return null.
/// </summary>
public static class MagicBrushPairing
{
    /// <summary><c>int(''.join(filter(str.isdigit, name)))</c> for ASCII digits; null where Python's <c>int('')</c> raises (no digit).</summary>
    public static BigInteger? DigitKey(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        var digits = string.Concat(name.Where(char.IsAsciiDigit));
        return digits.Length == 0 ? null : BigInteger.Parse(digits, System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>The names <c>get_final_turn_img</c> / <c>get_all_turn_imgs</c> look at: <c>'.png' in s or '.jpg' in s</c>, and <c>'mask' not in s</c>.</summary>
    public static IReadOnlyList<string> ImageNames(IEnumerable<string> names) =>
        names.Where(s => (s.Contains(".png", StringComparison.Ordinal) || s.Contains(".jpg", StringComparison.Ordinal)) && !s.Contains("mask", StringComparison.Ordinal))
             .Order(StringComparer.Ordinal).ToList();

    /// <summary><c>get_final_turn_img(dir, 'generated')</c> on the names of the folder's files (null: the reference raises).</summary>
    public static string? FinalTurnGenerated(IEnumerable<string> names)
    {
        var images = ImageNames(names);
        if (images.Count == 1) return images[0].Contains("_1", StringComparison.Ordinal) ? images[0] : null;
        return LastByDigits(images.Where(s => s.Contains("iter_", StringComparison.Ordinal)));
    }

    /// <summary><c>get_final_turn_img(dir, 'gt')</c> on the names of the folder's files (null: the reference raises).</summary>
    public static string? FinalTurnGroundTruth(IEnumerable<string> names) =>
        LastByDigits(ImageNames(names).Where(s => s.Contains("output", StringComparison.Ordinal)));

    private static string? LastByDigits(IEnumerable<string> names)
    {
        var list = names.ToList();
        if (list.Count == 0 || list.Any(n => DigitKey(n) is null)) return null;
        return list.OrderBy(n => DigitKey(n)!.Value).Last();   // List.sort(key=...) is stable, as OrderBy is
    }
}
